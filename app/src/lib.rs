//! The web UI's components, rendered by the server (feature `ssr`) and
//! hydrated in the browser (feature `hydrate`).
//!
//! - [`wire`]: every REST body and WebSocket frame of `PROTOCOL.md`: the
//!   `protocol` crate, re-exported for the pages.
//! - [`reads`]: what the pages show, read from the server's broker while
//!   it renders them and from the REST API in the browser.
//! - [`client`]: the browser's calls to the REST API (hydrate only).
//! - [`auth`]: the API key, asked for when the server requires one.
//! - [`live`]: a live WebSocket subscription (a topic or a pattern) with
//!   reconnect and resume; [`presence`]: a topic's presence kept current
//!   over a WebSocket; [`socket`]: what those two sessions share.
//! - [`board`]: the connections board's arithmetic (lag, queue fill,
//!   rates, sort orders).
//! - [`pages`]: one module per page; [`components`]: pieces they share;
//!   [`poll`]: how a page refreshes what it read.

pub mod auth;
pub(crate) mod board;
pub mod client;
pub mod components;
pub mod live;
pub mod pages;
pub mod poll;
pub(crate) mod presence;
pub mod reads;
mod socket;
pub use protocol as wire;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::{path, SsrMode};

/// The HTML document around the app, rendered by the server. The bundle's
/// folder (`site_pkg_dir`) is the versioned one the server serves.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let stylesheet = format!("/{}/{}.css", options.site_pkg_dir, options.output_name);
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <AutoReload options=options.clone()/>
                <link rel="stylesheet" id="leptos" href=stylesheet/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser, after hydration: tests wait for this
    // marker before they click anything.
    Effect::new(move || {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Title text="pubsub"/>
        <Router>
            <header class="site-header">
                <A href="/" attr:class="brand">"pubsub"</A>
                <nav aria-label="Main">
                    <A href="/" exact=true>"Dashboard"</A>
                    <A href="/topics">"Topics"</A>
                    <A href="/live">"Live"</A>
                    <A href="/connections">"Connections"</A>
                    <A href="/api-docs">"API"</A>
                </nav>
                <auth::KeyPrompt/>
            </header>
            <main>
                // The pages with data render `Async`: the server sends the
                // HTML once their reads are done, so it shows the data even
                // without JavaScript (out-of-order streaming would need a
                // script to move it into place). They read memory, or NATS
                // in cluster mode: milliseconds.
                <Routes fallback=pages::not_found::NotFound>
                    <Route path=path!("/") view=pages::dashboard::Dashboard ssr=SsrMode::Async/>
                    <Route path=path!("/topics") view=pages::topics::Topics ssr=SsrMode::Async/>
                    <Route path=path!("/topics/:name") view=pages::topic::Topic ssr=SsrMode::Async/>
                    <Route path=path!("/connections") view=pages::connections::Connections ssr=SsrMode::Async/>
                    <Route path=path!("/live") view=pages::live::Live/>
                    <Route path=path!("/api-docs") view=pages::api_docs::ApiDocs/>
                </Routes>
            </main>
        </Router>
    }
}
