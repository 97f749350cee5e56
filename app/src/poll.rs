//! The one way a page refreshes what it shows: [`every`] calls `tick` once
//! when the component is hydrated and then every `period` until the
//! component is gone. On the server nothing runs (effects do not), so the
//! first paint comes from what the component renders without data.

use leptos::prelude::*;
use std::time::Duration;

/// Calls `tick(true)` now and `tick(false)` every `period` after, for as
/// long as the calling component lives.
pub fn every<F>(period: Duration, tick: F)
where
    F: Fn(bool) + Clone + 'static,
{
    Effect::new(move || {
        tick(true);
        let again = tick.clone();
        if let Ok(handle) = set_interval_with_handle(move || again(false), period) {
            on_cleanup(move || handle.clear());
        }
    });
}
