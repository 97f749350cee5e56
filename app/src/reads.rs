//! What the pages read, with one call that works on both sides of
//! hydration.
//!
//! A page keeps each thing it shows in a Leptos `Resource` whose fetcher
//! is one of the functions here, read under a `<Transition>`
//! ([`crate::components::awaited::Awaited`]):
//!
//! - **On the server** (feature `ssr`) they ask the [`Source`] that the
//!   server provides through Leptos context for each page request (its
//!   broker, not HTTP). The page routes render with `SsrMode::Async`, so the
//!   HTML is sent once every resource has its value: the first paint shows
//!   real data, also with JavaScript off. Each value is written into the
//!   page beside the HTML.
//! - **In the browser** a resource starts from the value written into the
//!   page instead of asking again, so hydration finds the DOM it would have
//!   rendered (no "Loading…" flash, no mismatch). Later fetches, by
//!   [`crate::poll`] or after an action, call the REST API
//!   ([`crate::client`]) with the tab's API key.
//!
//! **API keys.** The browser keeps its key in `sessionStorage` and sends it
//! only on its REST and WebSocket calls, never with a page load, so a
//! server with keys usually cannot tell who asks for a page. The server's
//! [`Source`] answers [`Loaded::Withheld`] for every read that the page
//! request itself would not be allowed to make over REST (the same check,
//! the same table of roles); the page then renders the "Loading…" state it
//! showed before, and [`crate::poll`] fetches the value at once after
//! hydration with the tab's key (a `401` opens the key prompt as before).
//! Without keys, or for a request that carries an acceptable key in
//! `Authorization` or `X-API-Key` (a program, a proxy adding one), the data
//! is rendered. A cookie would let the server see the browser's key on page
//! loads too, but it would also be sent with every cross-site request, and
//! the REST API would then need CSRF protection: not worth a faster first
//! paint for keyed servers.

use crate::wire::{
    ConnectionInfo, ErrorCode, HistoryPage, Presence, Stats, StatsHistory, StatsSample,
    StatsTotals, TopicDetail, TopicSummary,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// One read as a page holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Loaded<T> {
    Ready(T),
    /// The server's message (`CODE: message`), or why it cannot be reached.
    Failed(String),
    /// Rendered on the server for a visitor it may not show this to (see
    /// the module's header): the browser asks for it itself.
    Withheld,
}

impl<T> Loaded<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Loaded<U> {
        match self {
            Loaded::Ready(value) => Loaded::Ready(f(value)),
            Loaded::Failed(e) => Loaded::Failed(e),
            Loaded::Withheld => Loaded::Withheld,
        }
    }
}

impl<T> From<Result<T, String>> for Loaded<T> {
    fn from(result: Result<T, String>) -> Self {
        match result {
            Ok(value) => Loaded::Ready(value),
            Err(e) => Loaded::Failed(e),
        }
    }
}

/// An error the server answered, as the pages show it: `CODE: message`, the
/// REST body's two fields.
pub fn refusal(code: ErrorCode, message: &str) -> String {
    format!("{code}: {message}")
}

/// A read's answer, from a server-side [`Source`].
pub type Answer<T> = Pin<Box<dyn Future<Output = Loaded<T>> + Send>>;

/// The server's side of the reads: one method per REST read the pages
/// make, answering what that REST call would (the same wire types, the
/// same errors as `CODE: message`), or [`Loaded::Withheld`] when the page
/// request may not read it. Implemented by the server over its broker and
/// provided for each page request ([`provide_source`]); `app` does not
/// depend on the server. Answers own what they need (`'static`), so a
/// resource can hold them.
pub trait Source: Send + Sync + 'static {
    /// `GET /api/topics`.
    fn topics(&self) -> Answer<Vec<TopicSummary>>;
    /// `GET /api/topics/{name}`.
    fn topic(&self, name: &str) -> Answer<TopicDetail>;
    /// `GET /api/topics/{name}/messages?last_n=N`.
    fn history(&self, name: &str, last_n: Option<u64>) -> Answer<HistoryPage>;
    /// `GET /api/stats`.
    fn stats(&self) -> Answer<Stats>;
    /// `GET /api/stats/history?last_n=N`.
    fn stats_history(&self, last_n: Option<usize>) -> Answer<StatsHistory>;
    /// `GET /api/topics/{name}/presence`.
    fn presence(&self, name: &str) -> Answer<Presence>;
    /// `GET /api/connections` (role `admin`).
    fn connections(&self) -> Answer<Vec<ConnectionInfo>>;
}

/// What the dashboard shows: the counters now and the per-second samples.
/// Not the per-topic counters of `/api/stats`: the page does not show them,
/// and with many topics they would weigh on every page load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    pub uptime_sec: u64,
    pub totals: StatsTotals,
    /// Oldest first.
    pub samples: Vec<StatsSample>,
}

pub fn topics() -> impl Future<Output = Loaded<Vec<TopicSummary>>> + Send + 'static {
    read(|s| s.topics(), crate::client::list_topics)
}

pub fn topic(name: String) -> impl Future<Output = Loaded<TopicDetail>> + Send + 'static {
    read(
        {
            let name = name.clone();
            move |s| s.topic(&name)
        },
        move || async move { crate::client::topic(&name).await },
    )
}

pub fn history(
    name: String,
    last_n: Option<u64>,
) -> impl Future<Output = Loaded<HistoryPage>> + Send + 'static {
    read(
        {
            let name = name.clone();
            move |s| s.history(&name, last_n)
        },
        move || async move { crate::client::history(&name, last_n).await },
    )
}

pub fn presence(name: String) -> impl Future<Output = Loaded<Presence>> + Send + 'static {
    read(
        {
            let name = name.clone();
            move |s| s.presence(&name)
        },
        move || async move { crate::client::presence(&name).await },
    )
}

/// What the connections board shows: `GET /api/connections`, and when the
/// browser received it, for the rates between two reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Board {
    /// By id.
    pub connections: Vec<ConnectionInfo>,
    /// Milliseconds (the browser's clock) when it arrived; `None` when the
    /// server rendered it: its time is not comparable with the browser's.
    pub received_ms: Option<f64>,
}

/// The whole board.
pub fn board() -> impl Future<Output = Loaded<Board>> + Send + 'static {
    board_of(None)
}

/// The dashboard's view of the board: the `n` connections that lag most
/// (only those that lag), laggiest first. Reduced where it is read, so the
/// page carries five rows, not a thousand.
pub fn laggiest(n: usize) -> impl Future<Output = Loaded<Board>> + Send + 'static {
    board_of(Some(n))
}

/// One read for both (one future type in the WASM, not two): the board,
/// or its `top` laggiest.
fn board_of(top: Option<usize>) -> impl Future<Output = Loaded<Board>> + Send + 'static {
    let reduce = move |connections: Vec<ConnectionInfo>| match top {
        Some(n) => crate::board::laggiest(connections, n),
        None => connections,
    };
    read(
        move |s| {
            let read = s.connections();
            Box::pin(async move {
                read.await.map(|connections| Board {
                    connections: reduce(connections),
                    received_ms: None,
                })
            }) as Answer<Board>
        },
        move || async move {
            let connections = crate::client::connections().await?;
            Ok(Board {
                connections: reduce(connections),
                received_ms: Some(crate::board::now_ms()),
            })
        },
    )
}

impl Dashboard {
    fn of(stats: Stats, history: StatsHistory) -> Self {
        Dashboard {
            uptime_sec: stats.uptime_sec,
            totals: stats.totals,
            samples: history.samples,
        }
    }
}

/// The counters and the newest `last_n` samples (all the server keeps when
/// `None`).
pub fn dashboard(
    last_n: Option<usize>,
) -> impl Future<Output = Loaded<Dashboard>> + Send + 'static {
    read(
        move |s| {
            let (stats, samples) = (s.stats(), s.stats_history(last_n));
            Box::pin(async move {
                match (stats.await, samples.await) {
                    (Loaded::Ready(stats), Loaded::Ready(samples)) => {
                        Loaded::Ready(Dashboard::of(stats, samples))
                    }
                    (Loaded::Failed(e), _) | (_, Loaded::Failed(e)) => Loaded::Failed(e),
                    _ => Loaded::Withheld,
                }
            }) as Answer<Dashboard>
        },
        move || async move {
            let samples = crate::client::stats_history(last_n).await?;
            let stats = crate::client::stats().await?;
            Ok(Dashboard::of(stats, samples))
        },
    )
}

/// Runs `on_server` against the page request's [`Source`] on the server
/// (withheld when there is none: a page rendered outside the page routes),
/// `in_browser` in the browser. Both are given so that each read is written
/// once above; each side calls only its own. (That is also why [`Source`]
/// is not behind the `ssr` feature: the browser's build type-checks the
/// server's closures without running them; the trait has no code.)
#[cfg(feature = "ssr")]
fn read<T, Fut>(
    on_server: impl FnOnce(&dyn Source) -> Answer<T>,
    _in_browser: impl FnOnce() -> Fut,
) -> impl Future<Output = Loaded<T>> + Send + 'static
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, String>> + 'static,
{
    // Looked up now, in the resource's fetcher, where the request's
    // reactive owner (and so its context) is current: not after an await.
    let answer = leptos::prelude::use_context::<ProvidedSource>().map(|p| on_server(&*p.0));
    async move {
        match answer {
            Some(answer) => answer.await,
            None => Loaded::Withheld,
        }
    }
}

#[cfg(all(feature = "hydrate", not(feature = "ssr")))]
fn read<T, Fut>(
    _on_server: impl FnOnce(&dyn Source) -> Answer<T>,
    in_browser: impl FnOnce() -> Fut,
) -> impl Future<Output = Loaded<T>> + Send + 'static
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, String>> + 'static,
{
    // The browser's futures are not `Send` (they hold JavaScript values);
    // resources want `Send` ones. The browser runs one thread, so this
    // wrapper, which panics if polled elsewhere, never fires.
    let fetch = in_browser();
    send_wrapper::SendWrapper::new(async move { Loaded::from(fetch.await) })
}

/// Neither side (the crate's own unit tests): nothing to read from.
#[cfg(not(any(feature = "ssr", feature = "hydrate")))]
fn read<T, Fut>(
    _on_server: impl FnOnce(&dyn Source) -> Answer<T>,
    _in_browser: impl FnOnce() -> Fut,
) -> impl Future<Output = Loaded<T>> + Send + 'static
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, String>> + 'static,
{
    std::future::ready(Loaded::Withheld)
}

/// The page request's [`Source`], as context.
#[cfg(feature = "ssr")]
#[derive(Clone)]
struct ProvidedSource(std::sync::Arc<dyn Source>);

/// Makes `source` what this page request's reads ask. The server calls it
/// for each page request, from the context function of its page routes.
#[cfg(feature = "ssr")]
pub fn provide_source(source: impl Source) {
    leptos::prelude::provide_context(ProvidedSource(std::sync::Arc::new(source)));
}
