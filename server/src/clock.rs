//! Wall-clock time in the one representation the database stores: milliseconds since the Unix epoch.
//!
//! Handlers take time from the `Clock` in state, never from the system directly, so that expiry
//! rules (links, sessions, invites) are tested by moving a manual clock rather than by sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const SECOND: i64 = 1_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Default)]
pub struct Clock {
    /// `None`: the system clock. `Some`: an offset added to it, moved by tests.
    offset: Option<Arc<AtomicI64>>,
}

impl Clock {
    pub fn system() -> Self {
        Clock { offset: None }
    }

    /// The system clock plus an offset that [`Clock::advance`] moves forward.
    pub fn adjustable() -> Self {
        Clock {
            offset: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    pub fn now(&self) -> i64 {
        now_millis()
            + self
                .offset
                .as_ref()
                .map_or(0, |o| o.load(Ordering::Relaxed))
    }

    /// Moves an adjustable clock forward; does nothing to the system clock.
    pub fn advance(&self, millis: i64) {
        if let Some(offset) = &self.offset {
            offset.fetch_add(millis, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjustable_clocks_move_and_system_clocks_do_not() {
        let clock = Clock::adjustable();
        let before = clock.now();
        clock.advance(DAY);
        assert!(clock.now() >= before + DAY);
        let system = Clock::system();
        system.advance(DAY);
        assert!(system.now() < before + HOUR);
    }
}
