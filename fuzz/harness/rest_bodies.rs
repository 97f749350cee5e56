//! The `rest_bodies` target: request bodies, topic names and queries sent
//! through the real router (`pubsub_server::router`), in process, with
//! `tower::ServiceExt::oneshot`.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/rest_bodies.rs`) and the
//! corpus replay test (`server/tests/fuzz_corpus.rs`).
//!
//! An input is `[route, rest...]`: the first byte picks the request (see
//! [`Request::parse`]). Creating a topic, publishing to the existing one
//! and a batch publish take `rest` as the body; the other routes take `rest` up to the first
//! newline as the `{name}` (percent-encoded into the path) and what follows
//! as the body or the query.
//!
//! What must hold for any input: never a 5xx; the status is one the contract
//! lists for that route; an error has the contract's body
//! `{"error": {"code", "message"}}` with the code of that status; a success
//! has the route's documented shape.

use axum::body::Body;
use axum::http::{self, Method, StatusCode};
use protocol::{
    BatchResult, BatchResults, HistoryPage, Published, RestError, TopicChanged, TopicDetail,
};
use pubsub_server::config::Config;
use pubsub_server::shutdown::Shutdown;
use pubsub_server::AppState;
use std::sync::OnceLock;
use tower::ServiceExt;

/// The topic that exists before each input.
pub const TOPIC: &str = "orders";

/// `--max-message-bytes` of the server under test.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// One router and one current-thread runtime per process: building the
/// router (with the UI's routes) costs far more than one request.
struct Server {
    runtime: tokio::runtime::Runtime,
    state: AppState,
    router: axum::Router,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        // A small payload limit, so that short inputs reach PAYLOAD_TOO_LARGE.
        let args = [
            "pubsub-server",
            "--addr",
            "127.0.0.1:0",
            "--max-message-bytes",
            &MAX_MESSAGE_BYTES.to_string(),
        ];
        let config = Config::load_from(args).expect("a valid config");
        let state = AppState::new(config, Shutdown::new());
        let router = {
            let _entered = runtime.enter();
            pubsub_server::router(state.clone())
        };
        Server {
            runtime,
            state,
            router,
        }
    })
}

/// The request an input stands for.
#[derive(Debug)]
enum Request {
    /// `POST /api/topics` with this body.
    CreateTopic(Vec<u8>),
    /// `POST /api/topics/{name}/messages` with this body.
    Publish { name: String, body: Vec<u8> },
    /// `GET /api/topics/{name}/messages?{query}`.
    History { name: String, query: String },
    /// `GET /api/topics/{name}`.
    Topic { name: String },
    /// `DELETE /api/topics/{name}`.
    DeleteTopic { name: String },
    /// `POST /api/publish` with this body.
    Batch(Vec<u8>),
}

impl Request {
    fn parse(data: &[u8]) -> Option<Request> {
        let (&route, rest) = data.split_first()?;
        // The batch came later: the top 16 first bytes, so that the rest of
        // the corpus keeps the routes it was minimized for.
        if route >= 0xF0 {
            return Some(Request::Batch(rest.to_vec()));
        }
        // The name (up to the first newline) and what follows it.
        let named = |rest: &[u8]| -> (String, Vec<u8>) {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (encode(&rest[..i], PATH_SAFE), rest[i + 1..].to_vec()),
                None => (encode(rest, PATH_SAFE), Vec::new()),
            }
        };
        Some(match route % 6 {
            0 => Request::CreateTopic(rest.to_vec()),
            1 => Request::Publish {
                name: TOPIC.into(),
                body: rest.to_vec(),
            },
            2 => {
                let (name, body) = named(rest);
                Request::Publish { name, body }
            }
            3 => {
                let (name, query) = named(rest);
                Request::History {
                    name,
                    query: encode(&query, QUERY_SAFE),
                }
            }
            4 => Request::Topic {
                name: named(rest).0,
            },
            _ => Request::DeleteTopic {
                name: named(rest).0,
            },
        })
    }

    fn method(&self) -> Method {
        match self {
            Request::CreateTopic(_) | Request::Publish { .. } | Request::Batch(_) => Method::POST,
            Request::History { .. } | Request::Topic { .. } => Method::GET,
            Request::DeleteTopic { .. } => Method::DELETE,
        }
    }

    fn uri(&self) -> String {
        match self {
            Request::CreateTopic(_) => "/api/topics".into(),
            Request::Batch(_) => "/api/publish".into(),
            Request::Publish { name, .. } => format!("/api/topics/{name}/messages"),
            Request::History { name, query } => format!("/api/topics/{name}/messages?{query}"),
            Request::Topic { name } | Request::DeleteTopic { name } => {
                format!("/api/topics/{name}")
            }
        }
    }

    fn body(&self) -> Vec<u8> {
        match self {
            Request::CreateTopic(body) | Request::Publish { body, .. } | Request::Batch(body) => {
                body.clone()
            }
            _ => Vec::new(),
        }
    }

    /// The statuses the contract lists for the route. 404 stands also for
    /// a path the router does not match (an empty name: `NOT_FOUND`).
    fn allowed(&self) -> &'static [u16] {
        match self {
            Request::CreateTopic(_) => &[201, 400, 409, 413],
            Request::Publish { .. } => &[201, 400, 404, 413],
            Request::Batch(_) => &[200, 400, 413],
            Request::History { .. } | Request::Topic { .. } | Request::DeleteTopic { .. } => {
                &[200, 400, 404]
            }
        }
    }
}

/// Bytes kept as they are in a path segment; everything else is `%XX`.
const PATH_SAFE: &[u8] = b"-._~";
/// In a query, `=` and `&` also keep their meaning.
const QUERY_SAFE: &[u8] = b"-._~=&";

fn encode(bytes: &[u8], safe: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || safe.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs one input. Panics when the server misbehaves.
pub fn run(data: &[u8]) {
    let Some(request) = Request::parse(data) else {
        return;
    };
    let server = server();
    // Each input starts from the same state: only `TOPIC`, with no messages.
    let broker = &server.state.broker;
    server.runtime.block_on(async {
        for topic in broker.list_topics().await.expect("in memory") {
            let _ = broker.delete_topic(&topic.name).await;
        }
        broker
            .create_topic(TOPIC)
            .await
            .expect("create the fixed topic");
    });

    let http_request = http::Request::builder()
        .method(request.method())
        .uri(request.uri())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(request.body()))
        .expect("percent-encoded URIs are valid");
    let (status, body) = server.runtime.block_on(async {
        let response = server
            .router
            .clone()
            .oneshot(http_request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("read the response body");
        (status, body)
    });
    let text = String::from_utf8_lossy(&body);

    assert!(!status.is_server_error(), "{request:?}: {status} {text}");
    assert!(
        request.allowed().contains(&status.as_u16()),
        "{request:?}: {status} is not a status of this route: {text}"
    );
    if status.is_success() {
        let shape = match request {
            Request::CreateTopic(_) | Request::DeleteTopic { .. } => {
                serde_json::from_slice::<TopicChanged>(&body).map(drop)
            }
            Request::Publish { .. } => serde_json::from_slice::<Published>(&body).map(drop),
            Request::History { .. } => serde_json::from_slice::<HistoryPage>(&body).map(drop),
            Request::Topic { .. } => serde_json::from_slice::<TopicDetail>(&body).map(drop),
            Request::Batch(_) => serde_json::from_slice::<BatchResults>(&body).map(|batch| {
                // Each item's error has the code of a single publish's.
                for result in batch.results {
                    if let BatchResult::Failed(e) = result {
                        let code = e.error.code.http_status();
                        assert!(
                            [400, 404, 413].contains(&code),
                            "{request:?}: an item failed with {:?}: {text}",
                            e.error.code
                        );
                    }
                }
            }),
        };
        if let Err(e) = shape {
            panic!("{request:?}: {status} with a body not of the contract ({e}): {text}");
        }
    } else {
        let error: RestError = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("{request:?}: {status} with a body not of the contract ({e}): {text}")
        });
        assert_eq!(
            StatusCode::from_u16(error.error.code.http_status()).ok(),
            Some(status),
            "{request:?}: code {:?} with status {status}",
            error.error.code
        );
    }
}
