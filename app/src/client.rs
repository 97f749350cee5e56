//! The browser's calls to the REST API, typed with [`crate::wire`].
//!
//! Only the hydrated build talks to the network. On the server these
//! functions are never awaited (pages call them from effects and event
//! handlers, which do not run there) and would answer with an error.
//! Errors come back as sentences for people, with the contract's code.
//! The API key of [`crate::auth`] goes with every call; a `401` asks for one.

use crate::wire::{
    CreateTopic, HistoryPage, PublishMessage, Published, Stats, StatsHistory, TopicChanged,
    TopicDetail, TopicList, TopicSummary,
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

/// The server's OpenAPI document, as JSON (the `/api-docs` page reads it).
pub async fn openapi() -> Result<serde_json::Value, String> {
    get("/api/openapi.json").await
}

async fn get<T: DeserializeOwned>(path: &str) -> Result<T, String> {
    send::<(), T>("GET", path, None).await
}

#[cfg(feature = "hydrate")]
async fn send<B: Serialize, T: DeserializeOwned>(
    method: &str,
    path: &str,
    body: Option<&B>,
) -> Result<T, String> {
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
            .json(body)
            .map_err(|e| format!("cannot encode the request: {e}"))?,
        None => builder
            .build()
            .map_err(|e| format!("cannot build the request: {e}"))?,
    };
    let response = request
        .send()
        .await
        .map_err(|e| format!("the server cannot be reached ({e})"))?;
    if !response.ok() {
        let status = response.status();
        let message = match response.json::<RestError>().await {
            Ok(body) => crate::reads::refusal(body.error.code, &body.error.message),
            Err(_) => format!("the server answered HTTP {status}"),
        };
        if status == 401 {
            crate::auth::ask(message.clone());
        }
        return Err(message);
    }
    response
        .json::<T>()
        .await
        .map_err(|e| format!("unexpected answer from the server: {e}"))
}

#[cfg(not(feature = "hydrate"))]
async fn send<B: Serialize, T: DeserializeOwned>(
    _method: &str,
    _path: &str,
    _body: Option<&B>,
) -> Result<T, String> {
    Err("the REST client runs in the browser only".into())
}
