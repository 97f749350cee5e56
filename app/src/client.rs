//! The browser's calls to the REST API, typed with [`crate::wire`].
//!
//! Only the hydrated build talks to the network. On the server these
//! functions are never awaited (pages call them from effects and event
//! handlers, which do not run there) and would answer with an error.
//! Errors come back as sentences for people, with the contract's code.
//! The API key of [`crate::auth`] goes with every call; a `401` asks for one.

use crate::wire::{
    ConnectionInfo, ConnectionList, CreateTopic, HistoryPage, Presence, PublishMessage, Published,
    Stats, StatsHistory, TopicChanged, TopicDetail, TopicList, TopicSummary,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub async fn list_topics() -> Result<Vec<TopicSummary>, String> {
    get::<TopicList>("/api/topics").await.map(|l| l.topics)
}

pub async fn topic(name: &str) -> Result<TopicDetail, String> {
    get(&format!("/api/topics/{name}")).await
}

pub async fn create_topic(name: &str) -> Result<TopicChanged, String> {
    send(
        "POST",
        "/api/topics",
        Some(&CreateTopic {
            name: name.to_owned(),
        }),
    )
    .await
}

pub async fn delete_topic(name: &str) -> Result<TopicChanged, String> {
    send::<(), _>("DELETE", &format!("/api/topics/{name}"), None).await
}

pub async fn publish(topic: &str, message: &PublishMessage) -> Result<Published, String> {
    send(
        "POST",
        &format!("/api/topics/{topic}/messages"),
        Some(message),
    )
    .await
}

pub async fn history(topic: &str, last_n: Option<u64>) -> Result<HistoryPage, String> {
    let query = last_n.map(|n| format!("?last_n={n}")).unwrap_or_default();
    get(&format!("/api/topics/{topic}/messages{query}")).await
}

pub async fn stats() -> Result<Stats, String> {
    get("/api/stats").await
}

pub async fn stats_history(last_n: Option<usize>) -> Result<StatsHistory, String> {
    let query = last_n.map(|n| format!("?last_n={n}")).unwrap_or_default();
    get(&format!("/api/stats/history{query}")).await
}

pub async fn presence(topic: &str) -> Result<Presence, String> {
    get(&format!("/api/topics/{topic}/presence")).await
}

pub async fn connections() -> Result<Vec<ConnectionInfo>, String> {
    get::<ConnectionList>("/api/connections")
        .await
        .map(|l| l.connections)
}

/// Closes a connection for an admin. The answer's body says nothing the
/// caller needs (and a type of its own would be more code in the WASM).
pub async fn close_connection(id: u64) -> Result<(), String> {
    send::<(), serde::de::IgnoredAny>("DELETE", &format!("/api/connections/{id}"), None)
        .await
        .map(|_| ())
}

/// The server's OpenAPI document, as JSON (the `/api-docs` page reads it).
pub async fn openapi() -> Result<serde_json::Value, String> {
    get("/api/openapi.json").await
}

async fn get<T: DeserializeOwned>(path: &str) -> Result<T, String> {
    send::<(), T>("GET", path, None).await
}

/// Encodes the body, makes the call ([`exchange`]) and decodes the answer:
/// only the two serde steps depend on the types, so each call adds little
/// to the WASM.
#[cfg(feature = "hydrate")]
async fn send<B: Serialize, T: DeserializeOwned>(
    method: &str,
    path: &str,
    body: Option<&B>,
) -> Result<T, String> {
    let body = match body {
        Some(body) => Some(
            serde_json::to_string(body).map_err(|e| format!("cannot encode the request: {e}"))?,
        ),
        None => None,
    };
    let text = exchange(method, path, body).await?;
    serde_json::from_str(&text).map_err(|e| format!("unexpected answer from the server: {e}"))
}

/// One request with the tab's key; the body of a success, or the server's
/// refusal as `CODE: message` (a `401` also opens the key prompt). Not
/// generic: one copy in the WASM for every call.
#[cfg(feature = "hydrate")]
async fn exchange(method: &str, path: &str, body: Option<String>) -> Result<String, String> {
    use crate::wire::RestError;
    use gloo_net::http::{Method, RequestBuilder};
    let method = match method {
        "POST" => Method::POST,
        "DELETE" => Method::DELETE,
        _ => Method::GET,
    };
    let mut builder = RequestBuilder::new(path).method(method);
    if let Some(key) = crate::auth::key() {
        builder = builder.header("Authorization", &format!("Bearer {key}"));
    }
    let request = match body {
        Some(body) => builder
            .header("Content-Type", "application/json")
            .body(body),
        None => builder.build(),
    }
    .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = request
        .send()
        .await
        .map_err(|e| format!("the server cannot be reached ({e})"))?;
    let status = response.status();
    let text = response.text().await;
    if !response.ok() {
        let message = match text
            .ok()
            .and_then(|t| serde_json::from_str::<RestError>(&t).ok())
        {
            Some(body) => crate::reads::refusal(body.error.code, &body.error.message),
            None => format!("the server answered HTTP {status}"),
        };
        if status == 401 {
            crate::auth::ask(message.clone());
        }
        return Err(message);
    }
    text.map_err(|e| format!("unexpected answer from the server: {e}"))
}

#[cfg(not(feature = "hydrate"))]
async fn send<B: Serialize, T: DeserializeOwned>(
    _method: &str,
    _path: &str,
    _body: Option<&B>,
) -> Result<T, String> {
    Err("the REST client runs in the browser only".into())
}
