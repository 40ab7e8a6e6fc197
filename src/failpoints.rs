//! Crash points for the crash tests (issue 9): named step boundaries where the real binary can be
//! made to die as if SIGKILLed.
//!
//! Built with the `failpoints` feature, `crash_point!("issue.after_create")` is a
//! [`fail::fail_point!`] whose action exits the process with [`CRASH_EXIT_CODE`] (no destructors,
//! no status writes, no graceful shutdown); `FAILPOINTS="issue.after_create=return"` in the
//! environment arms it (read once by [`setup`] at process start). Without the feature the macro
//! expands to nothing and the `fail` crate is not linked.

/// Exit code of a process stopped at a crash point.
pub const CRASH_EXIT_CODE: i32 = 86;

/// Marks a step boundary the crash tests can stop the process at (see the module docs).
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoints::fail::fail_point!($name, |_| $crate::failpoints::crash($name));
    };
}

#[cfg(feature = "failpoints")]
pub use fail;

/// Logs that crash point `name` was reached and exits at once with [`CRASH_EXIT_CODE`].
#[cfg(feature = "failpoints")]
pub fn crash(name: &str) -> ! {
    tracing::error!(crash_point = name, "crash point {name} reached");
    std::process::exit(CRASH_EXIT_CODE)
}

/// Keeps the failpoint configuration read from `FAILPOINTS` alive while the process runs.
#[cfg(feature = "failpoints")]
pub struct Scenario(#[allow(dead_code)] fail::FailScenario<'static>);

/// Keeps the failpoint configuration alive while the process runs (nothing without the feature).
#[cfg(not(feature = "failpoints"))]
pub struct Scenario;

/// Arms the crash points named in `FAILPOINTS` (a no-op without the `failpoints` feature).
pub fn setup() -> Scenario {
    #[cfg(feature = "failpoints")]
    {
        let scenario = fail::FailScenario::setup();
        if let Ok(armed) = std::env::var("FAILPOINTS")
            && !armed.is_empty()
        {
            tracing::warn!(failpoints = %armed, "crash points armed");
        }
        Scenario(scenario)
    }
    #[cfg(not(feature = "failpoints"))]
    Scenario
}
