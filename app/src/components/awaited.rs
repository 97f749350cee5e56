//! [`Awaited`]: where a page shows what it read through a resource of
//! [`crate::reads`].

use leptos::prelude::*;

/// A `<Transition>` around `children`: the server waits for the resources
/// read inside before it renders them, and a refresh in the browser keeps
/// showing the previous value until the new one is there. Its fallback
/// shows only when the browser navigates to a page by itself (after the
/// first page): a page load comes with its values, and hydration starts
/// from them.
///
/// One component for every page, with boxed children: a single copy of the
/// transition's rendering code in the WASM instead of one per use.
#[component]
pub fn Awaited(children: Children) -> impl IntoView {
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {children()}
        </Transition>
    }
}
