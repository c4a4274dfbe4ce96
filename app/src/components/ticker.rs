//! A counter that counts `period`s while the component that made it lives: a resource that tracks
//! it reloads every period (lists, usage, details that follow the server by themselves).

use std::time::Duration;

use leptos::prelude::*;

pub fn ticker(period: Duration) -> RwSignal<u64> {
    let tick = RwSignal::new(0u64);
    let handle = set_interval_with_handle(move || tick.update(|t| *t += 1), period).ok();
    on_cleanup(move || {
        if let Some(h) = handle {
            h.clear();
        }
    });
    tick
}
