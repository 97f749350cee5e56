//! The load generator's REST calls (create topics, read stats, topics,
//! history and `/metrics`) through the protocol crate's client. Each call
//! has a client of its own, so no kept-alive connection lingers in the
//! server's figures between calls. Every failure is a value: the soak
//! counts it by [`HttpError::key`], it never panics on what the server sent.

use protocol::client::{Client, Method};
use std::net::SocketAddr;

pub use protocol::client::Error as HttpError;

fn client(addr: SocketAddr) -> Client {
    Client::new(&format!("http://{addr}"))
}

/// Sends one request with an optional JSON body; returns the status and
/// the body, whatever the status.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, Vec<u8>), HttpError> {
    let client = client(addr);
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|e| HttpError::Transport(format!("method {method:?}: {e}")))?;
    let mut request = client.request(method, path);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let reply = client.send(request).await?;
    Ok((reply.status, reply.text.into_bytes()))
}

/// `GET path`, expecting 2xx and a JSON body.
pub async fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value, HttpError> {
    client(addr).get(path).await
}

/// `GET path`, expecting 2xx and a text body.
pub async fn get_text(addr: SocketAddr, path: &str) -> Result<String, HttpError> {
    client(addr).get_text(path).await
}

/// The value of an unlabelled sample in the Prometheus text format.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_name() {
        let text = "# HELP pubsub_queued_events x\npubsub_queued_events 0\npubsub_connections 3\n\
                    pubsub_topic_messages_total{topic=\"a\"} 5\n";
        assert_eq!(metric(text, "pubsub_queued_events"), Some(0.0));
        assert_eq!(metric(text, "pubsub_connections"), Some(3.0));
        assert_eq!(metric(text, "pubsub_topic_messages_total"), None);
    }
}
