//! Crash points for the end-to-end crash tests (issue: every step boundary of the token lifecycle).
//!
//! With the `failpoints` feature, `FAILPOINTS="issue.after_create=return"` in the environment makes
//! the process exit (code [`CRASH_EXIT_CODE`]) the moment it reaches that point, like a SIGKILL:
//! no cleanup, no status write. Without the feature every point compiles to nothing.

/// The exit code of a process stopped at a crash point.
pub const CRASH_EXIT_CODE: i32 = 86;

/// Exits the process at the named point when the `failpoints` feature is on and the point is
/// configured with `return`; nothing otherwise.
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        {
            fail::fail_point!($name, |_| {
                eprintln!("crash point {} reached; exiting", $name);
                std::process::exit($crate::failpoints::CRASH_EXIT_CODE)
            });
        }
    };
}

/// Reads `FAILPOINTS` once at start; keep the guard for the life of the process.
#[cfg(feature = "failpoints")]
pub fn setup() -> Option<fail::FailScenario<'static>> {
    Some(fail::FailScenario::setup())
}

/// Without the `failpoints` feature there is nothing to set up.
#[cfg(not(feature = "failpoints"))]
pub fn setup() -> Option<()> {
    None
}
