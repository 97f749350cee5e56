//! A small client of the contract (feature `client`): the REST calls with
//! the wire types, any request with its status kept, and the WebSocket
//! upgrade, each with the API key when one is set. The CLI, the load
//! generator's control calls and the server's tests all go through it, so
//! there is one REST client in the tree besides the browser's (which speaks
//! `fetch` and lives in `app`).
//!
//! Every failure is a value ([`Error`]): what the server sent is never a
//! reason to panic. It does not reconnect or retry; that is a client
//! library's job, built on top of this.

use crate::{
    CreateTopic, ErrorCode, Health, HistoryPage, PublishMessage, Published, RestError, Stats,
    TopicChanged, TopicDetail, TopicList,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use reqwest::Method;

/// A WebSocket connection opened by [`Client::websocket`].
pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a call did not give what the contract promises.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The server could not be reached, or the exchange broke off.
    Transport(String),
    /// An answer outside 2xx. `code` and `message` come from the contract's
    /// error body when the answer has one; otherwise `message` is the body.
    Refused {
        status: u16,
        code: Option<ErrorCode>,
        message: String,
    },
    /// A 2xx answer whose body is not what the contract describes.
    Body(String),
}

impl Error {
    /// The status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A short key for counting failures by kind: `transport`,
    /// `http 503`, `body`.
    pub fn key(&self) -> String {
        match self {
            Error::Transport(_) => "transport".into(),
            Error::Refused { status, .. } => format!("http {status}"),
            Error::Body(_) => "body".into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Transport(m) => write!(f, "{m}"),
            Error::Refused {
                code: Some(code),
                message,
                ..
            } => write!(f, "{code}: {message}"),
            Error::Refused {
                status, message, ..
            } => write!(f, "HTTP {status}: {message}"),
            Error::Body(m) => write!(f, "unexpected answer: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// An answer of any status, for callers that look at refusals themselves.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub text: String,
}

impl Reply {
    /// The body as JSON; a body that is not JSON comes back as a string.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| self.text.clone().into())
    }

    /// The answer as `T` if it is a success, else the refusal.
    pub fn into_typed<T: DeserializeOwned>(self) -> Result<T, Error> {
        if !(200..300).contains(&self.status) {
            return Err(self.refusal());
        }
        serde_json::from_str(&self.text).map_err(|e| Error::Body(format!("{e}: {}", self.text)))
    }

    fn refusal(self) -> Error {
        match serde_json::from_str::<RestError>(&self.text) {
            Ok(e) => Error::Refused {
                status: self.status,
                code: Some(e.error.code),
                message: e.error.message,
            },
            Err(_) => Error::Refused {
                status: self.status,
                code: None,
                message: self.text,
            },
        }
    }
}

/// One server's API. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    api_key: Option<String>,
}

impl Client {
    /// A client of the server at `base` (`http://host:port`; a bare
    /// `host:port` means `http://`).
    pub fn new(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        let base = if base.contains("://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        Client {
            base,
            http: reqwest::Client::new(),
            api_key: None,
        }
    }

    /// Sends `key` as `Authorization: Bearer` on every request.
    pub fn with_api_key(mut self, key: Option<String>) -> Self {
        self.api_key = key;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The underlying HTTP client, for requests the helpers do not cover.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request to `path`, with the key if one is set.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends `request` and reads the whole answer, whatever its status.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Reply, Error> {
        let response = request
            .send()
            .await
            .map_err(|e| Error::Transport(format!("cannot reach {}: {e}", self.base)))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| Error::Transport(format!("reading the answer: {e}")))?;
        Ok(Reply { status, text })
    }

    /// `method path` with an optional JSON body, answered by a `T`.
    pub async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, Error> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await?.into_typed()
    }

    /// `GET path`, answered by a `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    /// `GET path` as text (`/metrics`).
    pub async fn get_text(&self, path: &str) -> Result<String, Error> {
        let reply = self.send(self.request(Method::GET, path)).await?;
        if (200..300).contains(&reply.status) {
            Ok(reply.text)
        } else {
            Err(reply.refusal())
        }
    }

    pub async fn health(&self) -> Result<Health, Error> {
        self.get("/api/health").await
    }

    pub async fn stats(&self) -> Result<Stats, Error> {
        self.get("/api/stats").await
    }

    pub async fn topics(&self) -> Result<TopicList, Error> {
        self.get("/api/topics").await
    }

    pub async fn topic(&self, name: &str) -> Result<TopicDetail, Error> {
        self.get(&format!("/api/topics/{}", segment(name))).await
    }

    pub async fn create_topic(&self, name: &str) -> Result<TopicChanged, Error> {
        let body = CreateTopic {
            name: name.to_owned(),
        };
        self.call(Method::POST, "/api/topics", Some(&body)).await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<TopicChanged, Error> {
        let path = format!("/api/topics/{}", segment(name));
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    pub async fn publish(&self, topic: &str, message: &PublishMessage) -> Result<Published, Error> {
        let path = format!("/api/topics/{}/messages", segment(topic));
        self.call(Method::POST, &path, Some(message)).await
    }

    /// A topic's history; `query` is `""`, `"last_n=N"` or `"since_seq=S"`.
    pub async fn history(&self, topic: &str, query: &str) -> Result<HistoryPage, Error> {
        let mut path = format!("/api/topics/{}/messages", segment(topic));
        if !query.is_empty() {
            path.push('?');
            path.push_str(query);
        }
        self.get(&path).await
    }

    /// The WebSocket endpoint's URL (`ws://` for `http://`, `wss://` for
    /// `https://`).
    pub fn ws_url(&self) -> String {
        let rest = self
            .base
            .strip_prefix("https://")
            .map(|r| format!("wss://{r}"))
            .or_else(|| {
                self.base
                    .strip_prefix("http://")
                    .map(|r| format!("ws://{r}"))
            })
            .unwrap_or_else(|| self.base.clone());
        format!("{rest}/ws")
    }

    /// Opens the WebSocket, with the key if one is set.
    pub async fn websocket(&self) -> Result<WebSocket, Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = self.ws_url();
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::Transport(format!("invalid server URL {url}: {e}")))?;
        if let Some(key) = &self.api_key {
            let value = format!("Bearer {key}")
                .parse()
                .map_err(|_| Error::Transport("the API key is not a valid header value".into()))?;
            request.headers_mut().insert("authorization", value);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let text = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err(Reply { status, text }.refusal())
            }
            Err(e) => Err(Error::Transport(format!(
                "cannot open the WebSocket at {url}: {e}"
            ))),
        }
    }
}

/// `name` as one path segment: the contract's names need no escaping, but
/// a name typed by a person may hold `/`, `?` or `%`, which must reach the
/// server as part of the name (and be refused there), not as structure.
fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_segment_whatever_they_hold() {
        assert_eq!(segment("orders.eu-west_1"), "orders.eu-west_1");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn the_websocket_url_follows_the_scheme() {
        assert_eq!(Client::new("http://h:1/").ws_url(), "ws://h:1/ws");
        assert_eq!(Client::new("https://h").ws_url(), "wss://h/ws");
        assert_eq!(Client::new("h:2").ws_url(), "ws://h:2/ws");
    }

    #[test]
    fn refusals_carry_the_contract_code_when_the_body_has_one() {
        let reply = Reply {
            status: 404,
            text: r#"{"error":{"code":"TOPIC_NOT_FOUND","message":"no topic x"}}"#.into(),
        };
        let e = reply.into_typed::<TopicDetail>().unwrap_err();
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.to_string(), "TOPIC_NOT_FOUND: no topic x");
        let plain = Reply {
            status: 502,
            text: "bad gateway".into(),
        };
        assert_eq!(
            plain.into_typed::<TopicDetail>().unwrap_err().to_string(),
            "HTTP 502: bad gateway"
        );
        let odd = Reply {
            status: 200,
            text: "{}".into(),
        };
        assert_eq!(odd.into_typed::<TopicDetail>().unwrap_err().key(), "body");
    }
}
