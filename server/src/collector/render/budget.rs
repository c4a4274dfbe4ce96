//! A time budget for one render. Renders run on a blocking thread, shared by every reader of the
//! instance, and a request's timeout does not stop them; a window at its limits could keep a core
//! busy long after everyone stopped waiting. [`within`] gives a render a deadline, and checkpoints
//! in the render's loops ([`spend`]) stop it once the deadline has passed, by unwinding to
//! [`within`] (which reports [`OverBudget`]); the render leaves nothing behind but its partial
//! work, which unwinding drops.
//!
//! A checkpoint costs a counter; one in 1,024 also reads the clock. Outside [`within`] (tests,
//! benchmarks) checkpoints do nothing.

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static TICKS: Cell<u32> = const { Cell::new(0) };
}

/// The render went past its budget and was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget;

/// Runs `render` on this thread, stopping it at its next checkpoint once `budget` has passed.
pub fn within<T>(budget: Duration, render: impl FnOnce() -> T) -> Result<T, OverBudget> {
    let previous = DEADLINE.replace(Some(Instant::now() + budget));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(render));
    DEADLINE.set(previous);
    match result {
        Ok(value) => Ok(value),
        Err(payload) if payload.is::<OverBudget>() => Err(OverBudget),
        // A real panic: on to whoever catches panics.
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// A checkpoint of a render's loop (see the module docs).
#[inline]
pub fn spend() {
    let ticks = TICKS.get().wrapping_add(1);
    TICKS.set(ticks);
    if ticks.is_multiple_of(1024) {
        check();
    }
}

#[cold]
fn check() {
    if let Some(deadline) = DEADLINE.get()
        && Instant::now() > deadline
    {
        // Not `panic!`: no panic hook, no message; `within` catches exactly this.
        std::panic::resume_unwind(Box::new(OverBudget));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_render_past_its_budget_is_stopped_and_one_within_it_is_not() {
        let endless = || loop {
            spend();
        };
        assert_eq!(within(Duration::from_millis(20), endless), Err(OverBudget));
        let quick = || (0..10_000u64).inspect(|_| spend()).sum::<u64>();
        assert_eq!(within(Duration::from_secs(60), quick), Ok(49_995_000));
        // Outside a budget, checkpoints do nothing.
        for _ in 0..10_000 {
            spend();
        }
    }

    #[test]
    fn real_panics_are_not_taken_for_a_spent_budget() {
        let caught = std::panic::catch_unwind(|| within(Duration::from_secs(60), || panic!("bug")));
        assert!(caught.is_err());
    }
}
