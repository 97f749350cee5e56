//! The web UI: the Leptos app from `app`, rendered on the server and
//! hydrated by the WASM bundle that cargo-leptos writes to the site root.

use crate::config::Config;
use crate::AppState;
use app::{shell, App};
use axum::Router;
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};

/// Leptos' options, from its environment variables (`LEPTOS_SITE_ROOT`,
/// default `target/site`), with our own listen address.
pub fn options(config: &Config) -> LeptosOptions {
    let mut options = leptos::config::get_configuration(None)
        .map(|c| c.leptos_options)
        .unwrap_or_else(|_| LeptosOptions::builder().output_name("pubsub").build());
    options.site_addr = config.addr;
    options
}

/// Adds the page routes, and static files from the site root as fallback.
pub fn routes(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    let page_routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    router
        .leptos_routes(state, page_routes, move || shell(options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
}
