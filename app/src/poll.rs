//! The one way a page keeps what it shows fresh: [`refresh`] refetches a
//! resource of [`crate::reads`] every `period` in the browser, for as long
//! as the component that called it lives ([`fill_withheld`] is its first
//! half, for values kept current otherwise).
//!
//! The first value comes with the page (rendered and written into it by
//! the server), so nothing is fetched when the page hydrates, except a
//! value the server withheld: that one is fetched at once, with the tab's
//! API key. On the server nothing runs (effects do not).

use crate::reads::Loaded;
use leptos::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// Refetches `resource` every `period`, and at once whenever it holds
/// [`Loaded::Withheld`] (which only the server answers).
pub fn refresh<T>(period: Duration, resource: Resource<Loaded<T>>)
where
    // What a resource's value needs to travel in the page.
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fill_withheld(resource);
    Effect::new(move || {
        if let Ok(handle) = set_interval_with_handle(move || resource.refetch(), period) {
            on_cleanup(move || handle.clear());
        }
    });
}

/// Fetches `resource` at once whenever it holds [`Loaded::Withheld`], and
/// never otherwise: for a value that something else keeps current (the
/// topic page's presence follows a WebSocket).
pub fn fill_withheld<T>(resource: Resource<Loaded<T>>)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    Effect::new(move || {
        if resource.with(|v| matches!(v, Some(Loaded::Withheld))) {
            resource.refetch();
        }
    });
}
