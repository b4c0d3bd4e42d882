//! Wall-clock seconds for token lifetimes, session timeouts and expiry, movable in tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, plus an offset every clone shares.
///
/// Token lifetimes (the IdP) and session timeouts (the app) read this clock, so a
/// test can move time forward instead of sleeping. The offset is shared by all
/// clones, so a test keeps one clone and advances the IdP's view of time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_secs: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock, with no offset.
    pub fn system() -> Self {
        Self::default()
    }

    /// Current time in whole seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        wall.saturating_add(self.offset_secs.load(Ordering::Relaxed))
            .max(0) as u64
    }

    /// Moves this clock (and every clone of it) forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_a_clone_moves_the_original() {
        let clock = Clock::system();
        let before = clock.now();
        clock.clone().advance(3600);
        assert!(clock.now() >= before + 3600);
    }
}
