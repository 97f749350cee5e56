//! Authentication, roles and the origin policy, over real sockets: every
//! route with no key, a wrong key, a key without the role and one with it.

mod common;

use common::{TestServer, Ws};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

async fn secured() -> TestServer {
    TestServer::start_with(|c| {
        c.api_keys = [
            "adm=admin",
            "pub=publish",
            "sub=subscribe",
            "ps=publish,subscribe",
        ]
        .iter()
        .map(|k| k.parse().expect("key spec"))
        .collect();
    })
    .await
}

/// Sends a request with an optional key in one of the two headers.
async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut request = s.http.request(method, s.url(path));
    if let Some(key) = key {
        // Alternate between the two accepted headers.
        request = if key.len() % 2 == 0 {
            request.header("authorization", format!("Bearer {key}"))
        } else {
            request.header("x-api-key", key)
        };
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, challenge)
}

async fn create_as_admin(s: &TestServer, name: &str) {
    let (status, body, _) = call(
        s,
        Method::POST,
        "/api/topics",
        Some("adm"),
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("-")
}

#[tokio::test]
async fn every_rest_route_needs_a_key_with_the_right_role() {
    let s = secured().await;
    let t = json!({"name": "t"});
    let m = json!({"payload": 1});
    // (method, path, body, the one role that may, whether any key may)
    let routes: Vec<(Method, &str, Option<Value>, &[&str])> = vec![
        (Method::GET, "/api/topics", None, &["adm", "pub", "sub"]),
        (Method::GET, "/api/stats", None, &["adm", "pub", "sub"]),
        (
            Method::GET,
            "/api/stats/history",
            None,
            &["adm", "pub", "sub"],
        ),
        (Method::GET, "/metrics", None, &["adm", "pub", "sub"]),
        (Method::POST, "/api/topics", Some(t.clone()), &["adm"]),
        (Method::GET, "/api/topics/t", None, &["adm", "pub", "sub"]),
        (
            Method::POST,
            "/api/topics/t/messages",
            Some(m.clone()),
            &["pub"],
        ),
        (Method::GET, "/api/topics/t/messages", None, &["sub"]),
        (Method::DELETE, "/api/topics/t", None, &["adm"]),
    ];
    for (method, path, body, allowed) in routes {
        let (status, err, challenge) = call(&s, method.clone(), path, None, body.clone()).await;
        assert_eq!(
            (status, code(&err)),
            (401, "UNAUTHORIZED"),
            "{method} {path} without a key"
        );
        assert_eq!(challenge.as_deref(), Some("Bearer"));
        let (status, err, _) = call(&s, method.clone(), path, Some("wrong"), body.clone()).await;
        assert_eq!(
            (status, code(&err)),
            (401, "UNAUTHORIZED"),
            "{method} {path} with a wrong key"
        );
        for key in ["adm", "pub", "sub"] {
            if allowed.contains(&key) {
                continue;
            }
            let (status, err, _) = call(&s, method.clone(), path, Some(key), body.clone()).await;
            assert_eq!(
                (status, code(&err)),
                (403, "FORBIDDEN"),
                "{method} {path} with {key}"
            );
            assert!(
                err["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("role"),
                "{err}"
            );
        }
        let (status, body, _) = call(&s, method.clone(), path, Some(allowed[0]), body).await;
        assert!(
            status < 300,
            "{method} {path} with {}: {status} {body}",
            allowed[0]
        );
    }
    let (_, topics, _) = call(&s, Method::GET, "/api/topics", Some("sub"), None).await;
    assert_eq!(
        topics["topics"],
        json!([]),
        "the topic was deleted by the admin key"
    );
}

/// Every operation the OpenAPI document lists (so every route the API
/// serves) is behind a key unless it is one of the two open ones, and
/// `HEAD` is behind whatever `GET` is: the guard reads the roles declared
/// with the routes, so a new route cannot slip through with none.
#[tokio::test]
async fn every_documented_operation_and_its_head_are_guarded() {
    let s = secured().await;
    let (_, doc, _) = call(&s, Method::GET, "/api/openapi.json", None, None).await;
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        let concrete = path.replace("{name}", "t");
        for method in item.as_object().expect("path item").keys() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let open = matches!(path.as_str(), "/api/health" | "/api/openapi.json");
            let mut methods = vec![method.clone()];
            if method == Method::GET {
                methods.push(Method::HEAD);
            }
            for m in methods {
                let (status, _, _) = call(&s, m.clone(), &concrete, None, None).await;
                if open {
                    assert_ne!(status, 401, "{m} {path} is open");
                } else {
                    assert_eq!(status, 401, "{m} {path} without a key");
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 14,
        "the document lists the API ({checked} checked)"
    );

    // HEAD on the history needs subscribe, like GET.
    create_as_admin(&s, "t").await;
    let head = |key| call(&s, Method::HEAD, "/api/topics/t/messages", Some(key), None);
    assert_eq!(head("pub").await.0, 403, "HEAD with a publish-only key");
    assert_eq!(head("sub").await.0, 200, "HEAD with a subscribe key");
}

#[tokio::test]
async fn health_and_the_ui_stay_open() {
    let s = secured().await;
    assert_eq!(
        call(&s, Method::GET, "/api/health", None, None).await.0,
        200
    );
    assert_eq!(call(&s, Method::GET, "/", None, None).await.0, 200);
    assert_eq!(call(&s, Method::GET, "/topics", None, None).await.0, 200);
    // Unknown API routes tell nothing to strangers, 404 to key holders.
    assert_eq!(call(&s, Method::GET, "/api/nope", None, None).await.0, 401);
    let (status, body, _) = call(&s, Method::GET, "/api/nope", Some("sub"), None).await;
    assert_eq!((status, code(&body)), (404, "NOT_FOUND"));
}

/// The upgrade's HTTP status, or 101.
async fn upgrade_status(s: &TestServer, query: &str, header: Option<(&str, &str)>) -> u16 {
    let mut request = format!("ws://{}/ws{query}", s.addr)
        .into_client_request()
        .expect("request");
    if let Some((name, value)) = header {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("header"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed otherwise: {e}"),
    }
}

#[tokio::test]
async fn the_websocket_takes_the_key_in_a_header_or_the_token_parameter() {
    let s = secured().await;
    assert_eq!(upgrade_status(&s, "", None).await, 401);
    assert_eq!(upgrade_status(&s, "?token=wrong", None).await, 401);
    assert_eq!(upgrade_status(&s, "?token=sub", None).await, 101);
    assert_eq!(
        upgrade_status(&s, "", Some(("authorization", "Bearer sub"))).await,
        101
    );
    assert_eq!(
        upgrade_status(&s, "", Some(("x-api-key", "pub"))).await,
        101
    );
    // An admin-only key connects (it may ping) but neither publishes nor subscribes.
    assert_eq!(upgrade_status(&s, "?token=adm", None).await, 101);
}

#[tokio::test]
async fn websocket_operations_need_their_role() {
    let s = secured().await;
    create_as_admin(&s, "t").await;
    let url = |key: &str| format!("ws://{}/ws?token={key}", s.addr);

    let mut subscriber = Ws::connect(&url("sub")).await;
    subscriber
        .send(
            json!({"type": "publish", "topic": "t", "message": {"payload": 1}, "request_id": "p"}),
        )
        .await;
    let e = subscriber.recv_json().await;
    assert_eq!(
        (&e["error"]["code"], &e["request_id"]),
        (&json!("FORBIDDEN"), &json!("p")),
        "{e}"
    );
    subscriber.subscribe("t", json!({})).await;

    let mut publisher = Ws::connect(&url("pub")).await;
    publisher
        .send(json!({"type": "subscribe", "topic": "t", "request_id": "s"}))
        .await;
    let e = publisher.recv_json().await;
    assert_eq!(
        (&e["error"]["code"], &e["request_id"]),
        (&json!("FORBIDDEN"), &json!("s")),
        "{e}"
    );
    publisher
        .send(
            json!({"type": "publish", "topic": "t", "message": {"payload": 7}, "request_id": "p"}),
        )
        .await;
    let ack = publisher.recv_json().await;
    assert_eq!(
        (&ack["type"], &ack["seq"]),
        (&json!("ack"), &json!(1)),
        "{ack}"
    );
    let event = subscriber.recv_json().await;
    assert_eq!(
        (&event["type"], &event["message"]["payload"]),
        (&json!("event"), &json!(7))
    );

    let mut admin = Ws::connect(&url("adm")).await;
    admin.send(json!({"type": "ping", "request_id": "x"})).await;
    assert_eq!(admin.recv_json().await["type"], "pong");
    admin.send(json!({"type": "subscribe", "topic": "t"})).await;
    assert_eq!(admin.recv_json().await["error"]["code"], "FORBIDDEN");
    // Nothing of the refused operations happened.
    let (_, detail, _) = call(&s, Method::GET, "/api/topics/t", Some("sub"), None).await;
    assert_eq!(
        (&detail["seq"], &detail["subscribers"]),
        (&json!(1), &json!(1))
    );
}

#[tokio::test]
async fn foreign_origins_may_not_open_websockets_or_change_state() {
    let s = TestServer::start().await;
    let host = s.addr.to_string();
    let own = format!("http://{host}");
    assert_eq!(
        upgrade_status(&s, "", Some(("origin", &own))).await,
        101,
        "the UI's own origin"
    );
    assert_eq!(
        upgrade_status(&s, "", None).await,
        101,
        "no Origin: not a browser"
    );
    assert_eq!(
        upgrade_status(&s, "", Some(("origin", "https://evil.example"))).await,
        403
    );
    let post = |origin: &'static str, name: &'static str| {
        s.http
            .post(s.url("/api/topics"))
            .header("origin", origin)
            .json(&json!({ "name": name }))
            .send()
    };
    let refused = post("https://evil.example", "a").await.expect("post");
    assert_eq!(refused.status().as_u16(), 403);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(code(&body), "FORBIDDEN");
    let read = s
        .http
        .get(s.url("/api/topics"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("get");
    assert_eq!(read.status().as_u16(), 200, "reads are not state changes");
    let (_, topics) = s.get("/api/topics").await;
    assert_eq!(
        topics["topics"],
        json!([]),
        "the refused create did nothing"
    );

    let listed =
        TestServer::start_with(|c| c.allowed_origins = vec!["https://app.example".into()]).await;
    assert_eq!(
        upgrade_status(&listed, "", Some(("origin", "https://app.example"))).await,
        101
    );
    assert_eq!(
        upgrade_status(&listed, "", Some(("origin", "https://evil.example"))).await,
        403
    );
    let any = TestServer::start_with(|c| c.allowed_origins = vec!["*".into()]).await;
    assert_eq!(
        upgrade_status(&any, "", Some(("origin", "https://evil.example"))).await,
        101
    );
}
