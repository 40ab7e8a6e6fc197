//! Time as the operator sees it. Production uses the system clock. The test world moves time
//! (GitLab's expiry, renewals) by writing an offset in seconds to a file the operator was pointed
//! at with the hidden `--clock-offset-file` flag; the operator polls it and re-reconciles
//! everything when it changes, so the real binary is tested across weeks in seconds.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// Source of the current time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock shifted by an offset read from a file (test world only).
#[derive(Debug)]
pub struct OffsetClock {
    offset_secs: AtomicI64,
}

impl OffsetClock {
    /// A clock with no offset yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            offset_secs: AtomicI64::new(0),
        })
    }

    /// Sets the offset.
    pub fn set_offset(&self, secs: i64) {
        self.offset_secs.store(secs, Ordering::SeqCst);
    }

    /// The offset in seconds.
    pub fn offset(&self) -> i64 {
        self.offset_secs.load(Ordering::SeqCst)
    }

    /// Polls `path` (an integer number of seconds) every `every`, updating the offset and
    /// publishing a new generation on `changed` each time it moves. Unreadable or malformed
    /// content keeps the previous offset and is logged once per change.
    pub async fn follow_file(self: Arc<Self>, path: PathBuf, every: Duration, changed: watch::Sender<u64>) {
        let mut last_error = String::new();
        loop {
            match tokio::fs::read_to_string(&path)
                .await
                .map(|s| s.trim().parse::<i64>())
            {
                Ok(Ok(secs)) if secs != self.offset() => {
                    tracing::info!(offset_secs = secs, "test clock moved");
                    self.set_offset(secs);
                    changed.send_modify(|g| *g += 1);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => log_once(&mut last_error, format!("clock offset file is malformed: {e}")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log_once(&mut last_error, format!("cannot read clock offset file: {e}")),
            }
            tokio::time::sleep(every).await;
        }
    }
}

fn log_once(last: &mut String, message: String) {
    if *last != message {
        tracing::warn!("{message}");
        *last = message;
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.offset())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn offset_file_moves_the_clock_and_signals_the_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offset");
        let clock = OffsetClock::new();
        let (tx, mut rx) = watch::channel(0u64);
        tokio::spawn(
            clock
                .clone()
                .follow_file(path.clone(), Duration::from_millis(10), tx),
        );
        std::fs::write(&path, "86400\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(clock.offset(), 86400);
        let skew = clock.now() - Utc::now();
        assert!((skew.num_seconds() - 86400).abs() <= 1, "skew {skew}");
    }
}
