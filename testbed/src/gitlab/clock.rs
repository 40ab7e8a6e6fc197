//! The emulator's injectable clock: real time plus an offset that tests move ("time travel"),
//! optionally frozen at one instant.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Duration, NaiveDate, Utc};

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Real time shifted by an offset.
    Running(Duration),
    /// Stopped at an instant until set, advanced or unfrozen.
    Frozen(DateTime<Utc>),
}

/// A clock move that would leave the representable date range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the clock cannot move that far")]
pub struct ClockRangeError;

/// A shareable clock; clones see the same time.
#[derive(Debug, Clone)]
pub struct Clock {
    mode: Arc<Mutex<Mode>>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock showing real time.
    pub fn new() -> Self {
        Self {
            mode: Arc::new(Mutex::new(Mode::Running(Duration::zero()))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Mode> {
        self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The emulator's current instant.
    pub fn now(&self) -> DateTime<Utc> {
        match *self.lock() {
            // Offsets are range-checked when set, so this cannot leave chrono's range in practice.
            Mode::Running(offset) => Utc::now()
                .checked_add_signed(offset)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            Mode::Frozen(at) => at,
        }
    }

    /// The current UTC calendar date (token expiry compares against it).
    pub fn today(&self) -> NaiveDate {
        self.now().date_naive()
    }

    /// Moves the clock forward (or back, with a negative duration); a frozen clock stays frozen.
    /// A move beyond the representable range is refused (the clock stays put, with a warning).
    pub fn advance(&self, by: Duration) {
        if let Err(e) = self.try_advance(by) {
            tracing::warn!(error = %e, "clock not moved");
        }
    }

    /// Like `advance`, reporting a move beyond the representable range.
    pub fn try_advance(&self, by: Duration) -> Result<(), ClockRangeError> {
        let mut mode = self.lock();
        let moved = match *mode {
            Mode::Running(offset) => offset
                .checked_add(&by)
                .filter(|o| Utc::now().checked_add_signed(*o).is_some())
                .map(Mode::Running),
            Mode::Frozen(at) => at.checked_add_signed(by).map(Mode::Frozen),
        };
        *mode = moved.ok_or(ClockRangeError)?;
        Ok(())
    }

    /// Jumps to `at`; a running clock keeps running from there, a frozen one stays at `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        let mut mode = self.lock();
        *mode = match *mode {
            Mode::Running(_) => Mode::Running(at - Utc::now()),
            Mode::Frozen(_) => Mode::Frozen(at),
        };
    }

    /// Stops the clock at its current instant.
    pub fn freeze(&self) {
        let now = self.now();
        *self.lock() = Mode::Frozen(now);
    }

    /// Lets a frozen clock run again from the instant it shows.
    pub fn unfreeze(&self) {
        let mut mode = self.lock();
        if let Mode::Frozen(at) = *mode {
            *mode = Mode::Running(at - Utc::now());
        }
    }

    /// Whether the clock is frozen.
    pub fn is_frozen(&self) -> bool {
        matches!(*self.lock(), Mode::Frozen(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_clock_moves_only_when_told() {
        let clock = Clock::new();
        let at = DateTime::parse_from_rfc3339("2030-01-01T23:59:59Z").map(|t| t.with_timezone(&Utc));
        let at = at.unwrap_or_else(|e| panic!("{e}"));
        clock.freeze();
        clock.set(at);
        assert_eq!(clock.now(), at);
        clock.advance(Duration::seconds(1));
        assert_eq!(
            clock.today(),
            NaiveDate::from_ymd_opt(2030, 1, 2).unwrap_or_default()
        );
    }

    #[test]
    fn absurd_moves_are_refused_not_panics() {
        let clock = Clock::new();
        let before = clock.now();
        assert_eq!(clock.try_advance(Duration::MAX), Err(ClockRangeError));
        clock.advance(Duration::MIN);
        assert!(clock.now() >= before);
        clock.freeze();
        assert_eq!(clock.try_advance(Duration::MAX), Err(ClockRangeError));
    }

    #[test]
    fn running_clock_keeps_the_offset() {
        let clock = Clock::new();
        clock.advance(Duration::days(400));
        let delta = clock.now() - Utc::now();
        assert!(delta > Duration::days(399) && delta <= Duration::days(400));
        clock.freeze();
        let frozen = clock.now();
        clock.unfreeze();
        assert!(clock.now() >= frozen);
    }
}
