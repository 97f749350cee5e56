//! The hydrate entry: cargo-leptos' loader script calls `hydrate()` once the
//! WASM is instantiated, and the server-rendered page comes alive.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
