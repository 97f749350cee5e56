//! [`Awaited`]: where a page shows what it read through a resource of
//! [`crate::reads`].

use leptos::prelude::*;

/// A `<Transition>` around `children`: the server waits for the resources
/// read inside before it renders them, and a refresh in the browser keeps
/// showing the previous value until the new one is there. It has no
/// fallback: the server sends the HTML with the values, and the browser
/// starts from them, so there is never anything to wait for on screen.
///
/// One component for every page, with boxed children: a single copy of the
/// transition's rendering code in the WASM instead of one per use.
#[component]
pub fn Awaited(children: Children) -> impl IntoView {
    view! { <Transition>{children()}</Transition> }
}
