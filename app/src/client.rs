//! The browser's calls to the REST API, typed with [`crate::wire`].
//!
//! Only the hydrated build talks to the network; on the server these
//! functions are never awaited (they are called from effects), and answer
//! with an error if they ever were.

use crate::wire::TopicSummary;
#[cfg(feature = "hydrate")]
use crate::wire::{RestError, TopicList};

/// `GET /api/topics`.
pub async fn list_topics() -> Result<Vec<TopicSummary>, String> {
    #[cfg(feature = "hydrate")]
    {
        let response = gloo_net::http::Request::get("/api/topics")
            .send()
            .await
            .map_err(|e| format!("network error: {e}"))?;
        if !response.ok() {
            return Err(match response.json::<RestError>().await {
                Ok(body) => format!("{}: {}", body.error.code, body.error.message),
                Err(_) => format!("HTTP {}", response.status()),
            });
        }
        let list: TopicList = response
            .json()
            .await
            .map_err(|e| format!("unexpected answer: {e}"))?;
        Ok(list.topics)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        Err("the REST client runs in the browser only".into())
    }
}
