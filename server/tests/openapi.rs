//! The OpenAPI document at `GET /api/openapi.json`, over a real socket: it
//! is OpenAPI 3, it lists exactly the routes the server serves under
//! `/api`, each listed operation is served and answers with a status it
//! documents, and its security matches what the server enforces.

mod common;

use common::TestServer;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Every route under `/api`: the contract's table plus the additions the
/// README lists (`/api/stats/history`, `/api/openapi.json`).
const ROUTES: [(&str, &str); 17] = [
    ("get", "/api/health"),
    ("get", "/api/stats"),
    ("get", "/api/stats/history"),
    ("get", "/api/topics"),
    ("post", "/api/topics"),
    ("get", "/api/topics/{name}"),
    ("delete", "/api/topics/{name}"),
    ("get", "/api/topics/{name}/messages"),
    ("post", "/api/topics/{name}/messages"),
    ("post", "/api/publish"),
    ("get", "/api/topics/{name}/presence"),
    ("get", "/api/topics/{name}/events"),
    ("get", "/api/events"),
    ("get", "/api/connections"),
    ("get", "/api/connections/{id}"),
    ("delete", "/api/connections/{id}"),
    ("get", "/api/openapi.json"),
];

/// Operations anyone may call, even with authentication on.
const OPEN: [&str; 2] = ["/api/health", "/api/openapi.json"];

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn fetch_document(s: &TestServer) -> Value {
    let r = s
        .http
        .get(s.url("/api/openapi.json"))
        .send()
        .await
        .expect("GET /api/openapi.json");
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let text = r.text().await.expect("body");
    // Read back by a parser that knows nothing of how it was written.
    let spec = oas3::from_json(&text).expect("the document parses as OpenAPI 3.1");
    let version = spec
        .validate_version()
        .expect("a supported OpenAPI version");
    assert_eq!(version.major, 3);
    let operations = spec.operations().count();
    assert_eq!(operations, ROUTES.len(), "operations seen by the parser");
    serde_json::from_str(&text).expect("JSON")
}

/// `(method, path, operation)` for every operation of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if HTTP_METHODS.contains(&method.as_str()) {
                out.push((method.clone(), path.clone(), op.clone()));
            }
        }
    }
    out
}

fn documented_statuses(op: &Value) -> BTreeSet<u16> {
    op["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .map(|k| k.parse().expect("numeric status"))
        .collect()
}

/// A request for `op` that the server should accept: `{name}` is `topic`.
fn request(s: &TestServer, method: &str, path: &str, topic: &str) -> reqwest::RequestBuilder {
    request_to(s, method, path, topic, 1)
}

/// [`request`] with `{id}` a connection id.
fn request_to(
    s: &TestServer,
    method: &str,
    path: &str,
    topic: &str,
    connection: u64,
) -> reqwest::RequestBuilder {
    let mut url = s.url(
        &path
            .replace("{name}", topic)
            .replace("{id}", &connection.to_string()),
    );
    if path == "/api/events" {
        // Its one required parameter.
        url = format!("{url}?topic={topic}");
    }
    match (method, path) {
        ("post", "/api/topics") => s.http.post(url).json(&json!({ "name": "created-by-test" })),
        ("post", "/api/publish") => s.http.post(url).json(&json!({
            "messages": [{ "topic": topic, "message": { "payload": { "n": 1 } } }]
        })),
        ("post", _) => s.http.post(url).json(&json!({ "payload": { "n": 1 } })),
        ("delete", _) => s.http.delete(url),
        _ => s.http.get(url),
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_and_lists_exactly_the_routes() {
    let s = TestServer::start().await;
    let doc = fetch_document(&s).await;
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "OpenAPI 3, got {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert!(
        doc["info"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("/ws")),
        "the description points to the WebSocket"
    );

    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served);

    for (method, path, op) in operations(&doc) {
        let statuses = documented_statuses(&op);
        assert!(
            statuses.iter().any(|s| (200..300).contains(s)),
            "{method} {path}: a success response"
        );
        if path.contains("{name}") {
            assert!(statuses.contains(&404), "{method} {path}: TOPIC_NOT_FOUND");
            assert!(statuses.contains(&400), "{method} {path}: a bad name");
        }
        if method == "post" {
            assert!(
                statuses.contains(&413),
                "{method} {path}: a body over the limit"
            );
            assert!(
                op["requestBody"]["content"]["application/json"]["schema"].is_object(),
                "{method} {path}: a request body schema"
            );
        }
    }
    let create = &doc["paths"]["/api/topics"]["post"]["responses"];
    for status in ["201", "400", "409", "429"] {
        assert!(create.get(status).is_some(), "POST /api/topics {status}");
    }
}

#[tokio::test]
async fn every_documented_operation_is_served_with_a_documented_status() {
    let s = TestServer::start().await;
    let doc = fetch_document(&s).await;
    s.create_topic("t").await;
    s.publish("t", json!(1)).await;
    // An open connection for the connections routes.
    let _ws = s.ws().await;
    let (_, list) = s.get("/api/connections").await;
    let connection = list["connections"][0]["id"]
        .as_u64()
        .expect("an open connection");
    let mut ops = operations(&doc);
    // Delete last, so the other operations find the topic.
    ops.sort_by_key(|(method, _, _)| method == "delete");
    for (method, path, op) in ops {
        let r = request_to(&s, &method, &path, "t", connection)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        if r.headers()["content-type"] == "text/event-stream" {
            // A stream never ends: its head is the answer (dropping it
            // closes the stream).
            assert_eq!(status, 200, "{method} {path}");
            assert!(
                op["responses"]["200"]["content"]["text/event-stream"].is_object(),
                "{method} {path}: documented as a stream"
            );
            continue;
        }
        let body: Value = r.json().await.expect("a JSON answer");
        assert!(
            documented_statuses(&op).contains(&status),
            "{method} {path}: {status} is not documented: {body}"
        );
        assert!(
            (200..300).contains(&status),
            "{method} {path} is served: {status} {body}"
        );
    }
}

#[tokio::test]
async fn security_in_the_document_is_what_the_server_enforces() {
    let s = TestServer::start_with(|c| {
        c.api_keys = vec!["reader-key=subscribe".parse().expect("key spec")];
    })
    .await;
    // Open even with authentication on.
    let doc = fetch_document(&s).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["apiKey"]["in"], "header");
    assert_eq!(schemes["apiKey"]["name"], "X-API-Key");

    for (method, path, op) in operations(&doc) {
        let statuses = documented_statuses(&op);
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        assert_eq!(
            secured,
            !OPEN.contains(&path.as_str()),
            "{method} {path}: security {}",
            op["security"]
        );
        let status = request(&s, &method, &path, "t")
            .send()
            .await
            .expect("request")
            .status()
            .as_u16();
        if secured {
            assert!(statuses.contains(&401), "{method} {path}: 401 documented");
            assert_eq!(status, 401, "{method} {path} without a key");
        } else {
            assert!(!statuses.contains(&401), "{method} {path}: open");
            assert_eq!(status, 200, "{method} {path} without a key");
        }
        // A key without the role: 403, which must then be documented.
        let status = request(&s, &method, &path, "t")
            .header("X-API-Key", "reader-key")
            .send()
            .await
            .expect("request")
            .status()
            .as_u16();
        if status == 403 {
            assert!(statuses.contains(&403), "{method} {path}: 403 documented");
        }
    }
}

#[tokio::test]
async fn errors_have_the_contract_body_and_codes() {
    let s = TestServer::start().await;
    let doc = fetch_document(&s).await;
    let rest_error = &doc["components"]["schemas"]["RestError"];
    assert_eq!(rest_error["required"], json!(["error"]));
    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    for code in [
        "BAD_REQUEST",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "TOPIC_NOT_FOUND",
        "TOPIC_EXISTS",
        "PAYLOAD_TOO_LARGE",
        "RATE_LIMITED",
        "NOT_FOUND",
        "INTERNAL",
    ] {
        assert!(
            codes.as_array().unwrap().contains(&json!(code)),
            "{code} in {codes}"
        );
    }
    let topic_name = &doc["components"]["schemas"]["TopicName"];
    assert_eq!(topic_name["pattern"], "^[A-Za-z0-9._-]{1,255}$");
    assert_eq!(
        doc["components"]["schemas"]["MessageId"]["maxLength"],
        json!(128)
    );
    // Every error response is a RestError; `code` is narrowed per status.
    for (method, path, op) in operations(&doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('2') {
                continue;
            }
            let name = response["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/responses/"))
                .unwrap_or_else(|| panic!("{method} {path} {status}: a shared error response"));
            let schema =
                &doc["components"]["responses"][name]["content"]["application/json"]["schema"];
            assert_eq!(
                schema["allOf"][0]["$ref"], "#/components/schemas/RestError",
                "{name}"
            );
            let code = &schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"][0];
            let code = code.as_str().expect("a code");
            let expected: u16 = status.parse().unwrap();
            let code_status = match code {
                "BAD_REQUEST" => 400,
                "UNAUTHORIZED" => 401,
                "FORBIDDEN" => 403,
                "TOPIC_NOT_FOUND" | "NOT_FOUND" => 404,
                "TOPIC_EXISTS" => 409,
                "PAYLOAD_TOO_LARGE" => 413,
                "RATE_LIMITED" => 429,
                "UNAVAILABLE" => 503,
                other => panic!("unexpected code {other}"),
            };
            assert_eq!(code_status, expected, "{method} {path} {status}: {code}");
        }
    }
}
