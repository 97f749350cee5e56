//! Signed, expiring tokens over real sockets: what is refused (401), what
//! a token's claims do not allow (403, per request on the WebSocket), the
//! `refresh` and the expiry of a WebSocket's token, keys beside tokens, and
//! the public-key algorithms.
//!
//! Tokens are minted here with `jsonwebtoken`; the RS256 and ES256 key
//! pairs in `fixtures/` are for these tests only.

mod common;

use common::{Closed, TestServer, Ws};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use pubsub_server::config::Config;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "a test secret that is long enough for HS256";
const ADMIN: &str = "adm";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).expect("key"),
    )
    .expect("encode")
}

fn signed_with_pem(claims: &Value, algorithm: Algorithm, private: &str) -> String {
    let pem = std::fs::read(format!("{FIXTURES}/{private}")).expect("fixture");
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        _ => EncodingKey::from_ec_pem(&pem),
    }
    .expect("fixture key");
    encode(&Header::new(algorithm), claims, &key).expect("encode")
}

/// Claims for `sub`, valid for `ttl` seconds from now.
fn claims(sub: &str, roles: &[&str], topics: Value, ttl: i64) -> Value {
    let mut c = json!({
        "sub": sub,
        "exp": now() as i64 + ttl,
        "iat": now(),
        "roles": roles,
    });
    if !topics.is_null() {
        c["topics"] = topics;
    }
    c
}

/// The token the issue asks for: a browser limited to `orders.*` for ten
/// minutes.
fn orders_token(sub: &str) -> String {
    hs256(
        &claims(
            sub,
            &["publish", "subscribe"],
            json!({"publish": ["orders.*"], "subscribe": ["orders.*"]}),
            600,
        ),
        SECRET,
    )
}

/// A server started as its flags say (and the admin key `adm`).
async fn server(flags: &[&str]) -> TestServer {
    let mut args = vec![
        "pubsub-server",
        "--addr",
        "127.0.0.1:0",
        "--api-key",
        "adm=admin,publish",
        "--api-key",
        "ps=publish,subscribe",
    ];
    args.extend_from_slice(flags);
    let config = Config::load_from(args).expect("config");
    TestServer::start_with(move |c| *c = config).await
}

async fn with_secret() -> TestServer {
    let s = server(&["--token-secret", SECRET]).await;
    for topic in ["orders.eu", "orders.us", "users.x"] {
        let (status, body) = call(
            &s,
            Method::POST,
            "/api/topics",
            Some(ADMIN),
            Some(json!({"name": topic})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    s
}

/// A REST call with `Authorization: Bearer credential`.
async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    credential: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = s.http.request(method, s.url(path));
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("-")
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("-")
}

/// The status of a WebSocket upgrade with `?token=`.
async fn upgrade_status(s: &TestServer, token: &str) -> u16 {
    let url = format!("ws://{}/ws?token={token}", s.addr);
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed otherwise: {e}"),
    }
}

async fn ws_with(s: &TestServer, token: &str) -> Ws {
    Ws::connect(&format!("ws://{}/ws?token={token}", s.addr)).await
}

/// base64url without padding, for hand-made tokens.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn invalid_tokens_are_401() {
    let s = with_secret().await;
    let good = claims("c", &["subscribe"], Value::Null, 600);
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(good.to_string().as_bytes())
    );
    let mut no_exp = good.clone();
    no_exp.as_object_mut().expect("object").remove("exp");
    let mut no_sub = good.clone();
    no_sub.as_object_mut().expect("object").remove("sub");
    let mut not_yet = good.clone();
    not_yet["nbf"] = json!(now() + 600);
    let cases = [
        (
            "expired",
            hs256(&claims("c", &["subscribe"], Value::Null, -5), SECRET),
        ),
        ("not yet valid", hs256(&not_yet, SECRET)),
        (
            "another secret",
            hs256(&good, "another secret, just as long as the first"),
        ),
        ("alg none", unsigned),
        (
            "RS256 when HS256 is configured",
            signed_with_pem(&good, Algorithm::RS256, "token-rs256-private.pem"),
        ),
        (
            "HS512",
            encode(
                &Header::new(Algorithm::HS512),
                &good,
                &EncodingKey::from_secret(SECRET.as_bytes()).expect("key"),
            )
            .expect("encode"),
        ),
        (
            "unknown role",
            hs256(&claims("c", &["root"], Value::Null, 600), SECRET),
        ),
        (
            "malformed pattern",
            hs256(
                &claims("c", &["subscribe"], json!({"subscribe": ["ord*"]}), 600),
                SECRET,
            ),
        ),
        (
            "unknown role under topics",
            hs256(
                &claims("c", &["subscribe"], json!({"root": ["a"]}), 600),
                SECRET,
            ),
        ),
        ("no exp", hs256(&no_exp, SECRET)),
        ("no sub", hs256(&no_sub, SECRET)),
        ("garbage", "eyJub3Q.anVzdA.dG9rZW4".to_owned()),
        ("not a key either", "s3cret".to_owned()),
    ];
    for (what, token) in &cases {
        let (status, body) = call(&s, Method::GET, "/api/topics", Some(token), None).await;
        assert_eq!(
            (status, code(&body)),
            (401, "UNAUTHORIZED"),
            "{what}: {body}"
        );
        let (status, _) = call(
            &s,
            Method::GET,
            "/api/topics/orders.eu/messages",
            Some(token),
            None,
        )
        .await;
        assert_eq!(status, 401, "{what}: history");
        assert_eq!(upgrade_status(&s, token).await, 401, "{what}: websocket");
    }
    // The messages say what is wrong.
    let (_, body) = call(&s, Method::GET, "/api/topics", Some(&cases[0].1), None).await;
    assert!(message(&body).contains("expired"), "{body}");
    let (_, body) = call(&s, Method::GET, "/api/topics", Some(&cases[6].1), None).await;
    assert!(message(&body).contains("root"), "{body}");
    // A valid token is not a key: X-API-Key carries keys only.
    let token = orders_token("c");
    let response = s
        .http
        .get(s.url("/api/topics"))
        .header("x-api-key", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let (status, _) = call(&s, Method::GET, "/api/topics", Some(&token), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn tokens_alone_turn_authentication_on() {
    let s = TestServer::start_with(|c| {
        *c = Config::load_from(["x", "--addr", "127.0.0.1:0", "--token-secret", SECRET])
            .expect("config")
    })
    .await;
    let (status, body) = call(&s, Method::GET, "/api/topics", None, None).await;
    assert_eq!((status, code(&body)), (401, "UNAUTHORIZED"));
    let (status, _) = call(&s, Method::GET, "/api/topics", Some("anything"), None).await;
    assert_eq!(status, 401);
    let (status, _) = call(&s, Method::GET, "/api/health", None, None).await;
    assert_eq!(status, 200, "health stays open");
    let admin = hs256(&claims("ops", &["admin"], Value::Null, 60), SECRET);
    let (status, body) = call(
        &s,
        Method::POST,
        "/api/topics",
        Some(&admin),
        Some(json!({"name": "a"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_role_the_token_lacks_is_403() {
    let s = with_secret().await;
    let reader = hs256(&claims("r", &["subscribe"], Value::Null, 600), SECRET);
    let (status, body) = call(
        &s,
        Method::POST,
        "/api/topics/orders.eu/messages",
        Some(&reader),
        Some(json!({"payload": 1})),
    )
    .await;
    assert_eq!((status, code(&body)), (403, "FORBIDDEN"), "{body}");
    let (status, _) = call(
        &s,
        Method::POST,
        "/api/topics",
        Some(&reader),
        Some(json!({"name": "b"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &s,
        Method::DELETE,
        "/api/topics/orders.eu",
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &s,
        Method::GET,
        "/api/topics/users.x/messages",
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(status, 200, "no topics claim: every topic");
    // On the WebSocket: per request, the connection stays.
    let mut ws = ws_with(&s, &reader).await;
    ws.send(json!({"type": "publish", "topic": "orders.eu", "message": {"payload": 1}, "request_id": "p"})).await;
    let refused = ws.recv_json().await;
    assert_eq!(
        (
            refused["error"]["code"].as_str(),
            refused["request_id"].as_str()
        ),
        (Some("FORBIDDEN"), Some("p")),
        "{refused}"
    );
    ws.subscribe("orders.eu", json!({})).await;
}

/// The issue's "done when": a browser handed a token limited to
/// `orders.*` for ten minutes.
#[tokio::test]
async fn a_token_limited_to_orders_for_ten_minutes() {
    let s = with_secret().await;
    let token = orders_token("browser-1");
    // REST.
    let publish = |topic: &'static str| {
        let s = &s;
        let token = &token;
        async move {
            call(
                s,
                Method::POST,
                &format!("/api/topics/{topic}/messages"),
                Some(token),
                Some(json!({"payload": {"n": 1}})),
            )
            .await
        }
    };
    let (status, body) = publish("orders.eu").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = publish("users.x").await;
    assert_eq!((status, code(&body)), (403, "FORBIDDEN"), "{body}");
    assert!(
        message(&body).contains("users.x") && message(&body).contains("orders.*"),
        "the 403 names the topic and the claim: {body}"
    );
    // A name that is no name is BAD_REQUEST, as for a key, not FORBIDDEN.
    let (status, body) = publish("bad%20name").await;
    assert_eq!((status, code(&body)), (400, "BAD_REQUEST"), "{body}");
    let (status, body) = call(
        &s,
        Method::GET,
        "/api/topics/users.x/messages",
        Some(&token),
        None,
    )
    .await;
    assert_eq!((status, code(&body)), (403, "FORBIDDEN"), "{body}");
    let (status, body) = call(
        &s,
        Method::GET,
        "/api/topics/orders.eu/messages",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(1));
    let (status, _) = call(
        &s,
        Method::GET,
        "/api/topics/users.x/presence",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &s,
        Method::GET,
        "/api/topics/orders.eu/presence",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(&s, Method::GET, "/api/topics", Some(&token), None).await;
    assert_eq!(status, 200, "listing is not limited by topic");

    // WebSocket.
    let mut ws = ws_with(&s, &token).await;
    let ack = ws.subscribe("orders.eu", json!({})).await;
    assert_eq!(ack["topic"], "orders.eu");
    for (asked, why) in [
        ("users.x", "outside the claim"),
        ("orders.>", "wider than orders.*"),
        (">", "everything"),
    ] {
        ws.send(json!({"type": "subscribe", "topic": asked, "request_id": asked}))
            .await;
        let refused = ws.recv_json().await;
        assert_eq!(refused["type"], "error", "{why}: {refused}");
        assert_eq!(refused["error"]["code"], "FORBIDDEN", "{why}");
        assert_eq!(refused["request_id"], asked);
    }
    let ack = ws.subscribe("orders.*", json!({})).await;
    assert_eq!(ack["pattern"], true);
    ws.send(json!({"type": "publish", "topic": "users.x", "message": {"payload": 1}, "request_id": "pu"})).await;
    let refused = ws.recv_json().await;
    assert_eq!(
        (
            refused["error"]["code"].as_str(),
            refused["request_id"].as_str()
        ),
        (Some("FORBIDDEN"), Some("pu"))
    );
    ws.send(json!({"type": "presence", "topic": "users.x", "request_id": "pr"}))
        .await;
    assert_eq!(ws.recv_json().await["error"]["code"], "FORBIDDEN");
    // A token's connection is its sub.
    ws.send(json!({"type": "subscribe", "topic": "orders.us", "client_id": "someone-else", "request_id": "id"})).await;
    assert_eq!(ws.recv_json().await["error"]["code"], "FORBIDDEN");
    ws.send(json!({"type": "presence", "topic": "orders.eu", "request_id": "who"}))
        .await;
    let presence = ws.recv_json().await;
    assert_eq!(
        presence["clients"][0]["client_id"], "browser-1",
        "{presence}"
    );
    // Still open, and still publishing where it may.
    ws.send(json!({"type": "publish", "topic": "orders.eu", "message": {"payload": 2}, "request_id": "po"})).await;
    // Its own event may come before its ack.
    let mut two = [ws.recv_json().await, ws.recv_json().await];
    two.sort_by_key(|f| f["type"].as_str().map(str::to_owned));
    let [ack, event] = two;
    assert_eq!(
        (ack["type"].as_str(), ack["request_id"].as_str()),
        (Some("ack"), Some("po")),
        "{ack}"
    );
    assert_eq!(
        (event["type"].as_str(), event["topic"].as_str()),
        (Some("event"), Some("orders.eu")),
        "{event}"
    );
    ws.send(json!({"type": "ping", "request_id": "alive"}))
        .await;
    assert_eq!(ws.recv_json().await["type"], "pong");
}

#[tokio::test]
async fn refresh_keeps_the_sub_and_ends_what_the_new_token_does_not_allow() {
    let s = with_secret().await;
    let wide = hs256(
        &claims(
            "c1",
            &["subscribe"],
            json!({"subscribe": ["orders.*", "users.*"]}),
            600,
        ),
        SECRET,
    );
    let narrow = hs256(
        &claims(
            "c1",
            &["subscribe"],
            json!({"subscribe": ["orders.*"]}),
            600,
        ),
        SECRET,
    );
    let mut ws = ws_with(&s, &wide).await;
    ws.subscribe("orders.eu", json!({})).await;
    ws.subscribe("users.x", json!({})).await;
    ws.subscribe("users.*", json!({})).await;

    // Another sub, an invalid token: refused, nothing changes.
    let other = hs256(&claims("c2", &["subscribe"], Value::Null, 600), SECRET);
    ws.send(json!({"type": "refresh", "token": other, "request_id": "r-other"}))
        .await;
    let refused = ws.recv_json().await;
    assert_eq!(
        (
            refused["error"]["code"].as_str(),
            refused["request_id"].as_str()
        ),
        (Some("FORBIDDEN"), Some("r-other")),
        "{refused}"
    );
    let expired = hs256(&claims("c1", &["subscribe"], Value::Null, -5), SECRET);
    ws.send(json!({"type": "refresh", "token": expired, "request_id": "r-old"}))
        .await;
    assert_eq!(ws.recv_json().await["error"]["code"], "UNAUTHORIZED");
    publish_as_admin(&s, "users.x", json!("still")).await;
    assert_eq!(ws.recv_json().await["topic"], "users.x");

    // The narrower token: both users.* subscriptions end, then the ack.
    ws.send(json!({"type": "refresh", "token": narrow, "request_id": "r1"}))
        .await;
    let mut ended = Vec::new();
    let ack = loop {
        let frame = ws.recv_json().await;
        if frame["type"] == "info" {
            assert_eq!(frame["msg"], "unsubscribed", "{frame}");
            ended.push(frame["topic"].as_str().unwrap_or("-").to_owned());
        } else {
            break frame;
        }
    };
    assert_eq!(ended, ["users.*", "users.x"]);
    assert_eq!(
        (ack["type"].as_str(), ack["request_id"].as_str()),
        (Some("ack"), Some("r1")),
        "{ack}"
    );
    assert!(
        ack.get("topic").is_none(),
        "a refresh ack has no topic: {ack}"
    );
    publish_as_admin(&s, "users.x", json!("gone")).await;
    publish_as_admin(&s, "orders.eu", json!("kept")).await;
    let event = ws.recv_json().await;
    assert_eq!(
        (
            event["topic"].as_str(),
            event["message"]["payload"].as_str()
        ),
        (Some("orders.eu"), Some("kept")),
        "nothing of users.x: {event}"
    );
    ws.send(json!({"type": "subscribe", "topic": "users.x", "request_id": "again"}))
        .await;
    assert_eq!(ws.recv_json().await["error"]["code"], "FORBIDDEN");
    let (status, stats) = call(&s, Method::GET, "/api/topics/users.x", Some(ADMIN), None).await;
    assert_eq!((status, &stats["subscribers"]), (200, &json!(0)), "{stats}");

    // A key's connection cannot take a token.
    let mut keyed = Ws::connect(&format!("ws://{}/ws?token=ps", s.addr)).await;
    ws_refresh_code(&mut keyed, &orders_token("c1"), "FORBIDDEN").await;
    keyed.subscribe("users.x", json!({})).await;
}

async fn publish_as_admin(s: &TestServer, topic: &str, payload: Value) {
    let path = format!("/api/topics/{topic}/messages");
    let body = json!({ "payload": payload });
    let (status, answer) = call(s, Method::POST, &path, Some(ADMIN), Some(body)).await;
    assert_eq!(status, 201, "{answer}");
}

async fn ws_refresh_code(ws: &mut Ws, token: &str, expected: &str) {
    ws.send(json!({"type": "refresh", "token": token, "request_id": "rk"}))
        .await;
    let answer = ws.recv_json().await;
    assert_eq!(answer["error"]["code"], expected, "{answer}");
}

#[tokio::test]
async fn a_websocket_whose_token_expires_is_told_and_closed_with_4401() {
    let s = with_secret().await;
    let short = hs256(&claims("c", &["subscribe"], Value::Null, 2), SECRET);
    let mut ws = ws_with(&s, &short).await;
    ws.subscribe("orders.eu", json!({})).await;
    let started = std::time::Instant::now();
    let notice = ws.recv_skipping_pings().await;
    assert_eq!(
        (notice["type"].as_str(), notice["msg"].as_str()),
        (Some("info"), Some("token_expired")),
        "{notice}"
    );
    // Within a second or two (exp has seconds); generous for a busy machine.
    assert!(
        started.elapsed() <= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    match ws.recv_or_close().await {
        Err(Closed::Close(Some(close))) => assert_eq!(u16::from(close.code), 4401),
        other => panic!("expected close 4401, got {other:?}"),
    }
    let (status, topic) = call(&s, Method::GET, "/api/topics/orders.eu", Some(ADMIN), None).await;
    assert_eq!((status, &topic["subscribers"]), (200, &json!(0)), "{topic}");

    // A refresh in time moves the expiry.
    let short = hs256(&claims("c", &["subscribe"], Value::Null, 3), SECRET);
    let mut ws = ws_with(&s, &short).await;
    let longer = hs256(&claims("c", &["subscribe"], Value::Null, 600), SECRET);
    ws.send(json!({"type": "refresh", "token": longer, "request_id": "r"}))
        .await;
    assert_eq!(ws.recv_json().await["type"], "ack");
    ws.expect_silence(Duration::from_secs(4)).await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv_json().await["type"], "pong");
}

#[tokio::test]
async fn keys_keep_working_beside_tokens() {
    let s = with_secret().await;
    let (status, _) = call(
        &s,
        Method::POST,
        "/api/topics/users.x/messages",
        Some("ps"),
        Some(json!({"payload": 1})),
    )
    .await;
    assert_eq!(status, 201);
    let response = s
        .http
        .get(s.url("/api/topics/users.x/messages"))
        .header("x-api-key", "ps")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let mut ws = Ws::connect(&format!("ws://{}/ws?token=ps", s.addr)).await;
    ws.subscribe(">", json!({})).await;
    // A key's connection does not expire, and a refresh with tokens
    // configured is refused, not ignored.
    ws.send(json!({"type": "refresh", "token": "nonsense", "request_id": "r"}))
        .await;
    assert_eq!(ws.recv_json().await["error"]["code"], "UNAUTHORIZED");
}

#[tokio::test]
async fn refresh_without_token_configuration_is_acked_and_changes_nothing() {
    let s = TestServer::start().await;
    s.create_topic("a").await;
    let mut ws = s.ws().await;
    ws.subscribe("a", json!({})).await;
    ws.send(json!({"type": "refresh", "token": orders_token("c"), "request_id": "r"}))
        .await;
    let ack = ws.recv_json().await;
    assert_eq!(
        (ack["type"].as_str(), ack["request_id"].as_str()),
        (Some("ack"), Some("r"))
    );
    s.publish("a", json!(1)).await;
    assert_eq!(ws.recv_json().await["topic"], "a");
}

#[tokio::test]
async fn rs256_and_es256_verify_with_a_public_key() {
    for (public, private, algorithm, other) in [
        (
            "token-rs256-public.pem",
            "token-rs256-private.pem",
            Algorithm::RS256,
            ("token-es256-private.pem", Algorithm::ES256),
        ),
        (
            "token-es256-public.pem",
            "token-es256-private.pem",
            Algorithm::ES256,
            ("token-rs256-private.pem", Algorithm::RS256),
        ),
    ] {
        let path = format!("{FIXTURES}/{public}");
        let s = server(&["--token-public-key", &path]).await;
        let c = claims("c", &["subscribe"], json!({"subscribe": ["orders.*"]}), 600);
        let good = signed_with_pem(&c, algorithm, private);
        let (status, body) = call(&s, Method::GET, "/api/topics", Some(&good), None).await;
        assert_eq!(status, 200, "{algorithm:?}: {body}");
        let wrong = signed_with_pem(&c, other.1, other.0);
        let (status, _) = call(&s, Method::GET, "/api/topics", Some(&wrong), None).await;
        assert_eq!(status, 401, "{algorithm:?} server, {:?} token", other.1);
        let (status, _) = call(
            &s,
            Method::GET,
            "/api/topics",
            Some(&hs256(&c, SECRET)),
            None,
        )
        .await;
        assert_eq!(status, 401, "{algorithm:?} server, HS256 token");
        let mut ws = ws_with(&s, &good).await;
        ws.send(json!({"type": "subscribe", "topic": "users.x", "request_id": "u"}))
            .await;
        assert_eq!(ws.recv_json().await["error"]["code"], "FORBIDDEN");
    }
}

#[test]
fn token_settings_that_cannot_be_meant_are_refused_at_start() {
    let rsa = format!("{FIXTURES}/token-rs256-public.pem");
    let ec = format!("{FIXTURES}/token-es256-public.pem");
    let secret_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(secret_file.path(), format!("{SECRET}\n")).expect("write");
    let secret_path = secret_file.path().to_str().expect("utf-8 path").to_owned();
    let load = |args: &[&str]| {
        let mut all = vec!["x"];
        all.extend_from_slice(args);
        Config::load_from(all)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    for (args, says) in [
        (vec!["--token-secret", "short"], "32"),
        (
            vec!["--token-secret", SECRET, "--token-public-key", &rsa],
            "exclude",
        ),
        (
            vec![
                "--token-secret",
                SECRET,
                "--token-secret-file",
                &secret_path,
            ],
            "not both",
        ),
        (
            vec!["--token-secret", SECRET, "--token-algorithm", "RS256"],
            "public-key",
        ),
        (
            vec!["--token-public-key", &rsa, "--token-algorithm", "HS256"],
            "secret",
        ),
        (
            vec!["--token-public-key", &rsa, "--token-algorithm", "ES256"],
            "P-256",
        ),
        (vec!["--token-public-key", &secret_path], "PEM"),
        (
            vec!["--token-secret", SECRET, "--api-key", "aaa.bbb.ccc=admin"],
            "shape of a token",
        ),
        (vec!["--token-algorithm", "HS256"], "needs"),
        (
            vec!["--token-public-key", "/nonexistent.pem"],
            "/nonexistent.pem",
        ),
    ] {
        let err = load(&args).expect_err(&format!("{args:?}"));
        assert!(err.contains(says), "{args:?}: {err}");
    }
    for ok in [
        vec!["--token-secret-file", secret_path.as_str()],
        vec!["--token-public-key", &rsa],
        vec!["--token-public-key", &ec, "--token-algorithm", "ES256"],
    ] {
        load(&ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
    // The secret is never printed.
    let printed = Config::load_from(["x", "--token-secret", SECRET])
        .expect("config")
        .to_toml();
    assert!(!printed.contains(SECRET), "{printed}");
}

#[tokio::test]
async fn the_secret_file_is_read_without_its_newline() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), format!("{SECRET}\r\n")).expect("write");
    let s = server(&["--token-secret-file", file.path().to_str().expect("path")]).await;
    let (status, body) = call(
        &s,
        Method::GET,
        "/api/topics",
        Some(&orders_token("c")),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// A page the server renders for a request with a token shows only what
/// the token may read over REST: history of the topics it covers.
#[tokio::test]
async fn pages_rendered_for_a_token_show_only_its_topics() {
    let s = with_secret().await;
    publish_as_admin(&s, "orders.eu", json!("visible-order-marker")).await;
    publish_as_admin(&s, "users.x", json!("secret-user-marker")).await;
    let token = orders_token("browser-1");
    let page = |path: &'static str| {
        let request = s.http.get(s.url(path)).bearer_auth(&token);
        async move {
            let response = request.send().await.expect("page");
            assert_eq!(response.status(), 200, "GET {path}");
            response.text().await.expect("body")
        }
    };
    let allowed = page("/topics/orders.eu").await;
    assert!(allowed.contains("visible-order-marker"), "{allowed}");
    let refused = page("/topics/users.x").await;
    assert!(!refused.contains("secret-user-marker"), "{refused}");
}

/// A batch publish checks each item's topic against the token: the ones
/// outside its claim are that item's 403, the others are published.
#[tokio::test]
async fn a_batch_publish_refuses_only_the_items_outside_the_claim() {
    let s = with_secret().await;
    let token = orders_token("batcher");
    let body = json!({"messages": [
        {"topic": "orders.eu", "message": {"payload": 1}},
        {"topic": "users.x", "message": {"payload": 2}},
        {"topic": "orders.us", "message": {"payload": 3}},
    ]});
    let (status, answer) = call(&s, Method::POST, "/api/publish", Some(&token), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let results = &answer["results"];
    assert_eq!(results[0]["status"], "published", "{answer}");
    assert_eq!(results[1]["error"]["code"], "FORBIDDEN", "{answer}");
    assert!(message(&results[1]).contains("users.x"), "{answer}");
    assert_eq!(results[2]["status"], "published", "{answer}");
    let (_, topic) = call(&s, Method::GET, "/api/topics/users.x", Some(ADMIN), None).await;
    assert_eq!(topic["seq"], 0, "nothing published to users.x: {topic}");
}

/// Opens an SSE stream with `?token=` and reads it until it ends or
/// `within` passes: the status and every byte read.
async fn sse_read(s: &TestServer, path: &str, within: Duration) -> (u16, String, bool) {
    let mut response = s.http.get(s.url(path)).send().await.expect("GET");
    let status = response.status().as_u16();
    let mut text = String::new();
    let ended = tokio::time::timeout(within, async {
        while let Ok(Some(chunk)) = response.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .is_ok();
    (status, text, ended)
}

#[tokio::test]
async fn sse_streams_are_scoped_by_the_token_and_end_when_it_expires() {
    let s = with_secret().await;
    for topic in ["orders.eu", "users.x"] {
        publish_as_admin(&s, topic, json!(1)).await;
    }
    let token = orders_token("browser-1");
    // Outside the claim: 403 before the stream starts, naming the claim.
    for path in [
        format!("/api/topics/users.x/events?token={token}"),
        format!("/api/events?topic=orders.eu&topic=users.x&token={token}"),
        // `orders.>` reaches deeper than the claim `orders.*` covers.
        format!("/api/events?topic=orders.%3E&token={token}"),
    ] {
        let (status, body, _) = sse_read(&s, &path, Duration::from_secs(5)).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body.contains("FORBIDDEN") && body.contains("orders.*"),
            "{body}"
        );
    }
    // Inside it: the stream starts (and is still open after a moment).
    for path in [
        format!("/api/topics/orders.eu/events?last_n=1&token={token}"),
        format!("/api/events?topic=orders.*&last_n=1&token={token}"),
    ] {
        let (status, text, ended) = sse_read(&s, &path, Duration::from_millis(500)).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert!(text.starts_with("event: subscribed\n"), "{text}");
        assert!(
            text.contains("event: message\n"),
            "the replayed message: {text}"
        );
        assert!(!ended, "a live stream stays open");
    }
    // A token that expires in two seconds ends its stream then.
    let short = hs256(
        &claims("c", &["subscribe"], json!({"subscribe": ["orders.*"]}), 2),
        SECRET,
    );
    let path = format!("/api/topics/orders.eu/events?token={short}");
    let (status, text, ended) = sse_read(&s, &path, Duration::from_secs(10)).await;
    assert_eq!(status, 200, "{text}");
    assert!(ended, "the stream ended at expiry: {text}");
    assert!(text.ends_with(": token expired\n\n"), "{text}");
    let (status, topic) = call(&s, Method::GET, "/api/topics/orders.eu", Some(ADMIN), None).await;
    assert_eq!((status, &topic["subscribers"]), (200, &json!(0)), "{topic}");
    // Once expired, it is refused outright (`exp` is in whole seconds: the
    // second it names is the last one the token is valid in).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body, _) = sse_read(&s, &path, Duration::from_secs(5)).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn a_token_that_expires_past_the_year_9999_is_served_without_overflow() {
    let s = with_secret().await;
    let mut absurd = claims("c", &["subscribe", "publish"], Value::Null, 600);
    absurd["exp"] = json!(u64::MAX);
    let token = hs256(&absurd, SECRET);
    let mut ws = ws_with(&s, &token).await;
    ws.send(json!({"type": "ping", "request_id": "p"})).await;
    assert_eq!(ws.recv_json().await["type"], "pong");
    publish_as_admin(&s, "orders.eu", json!(1)).await;
    let path = format!("/api/topics/orders.eu/events?last_n=1&token={token}");
    let (status, text, ended) = sse_read(&s, &path, Duration::from_millis(300)).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("event: message\n") && !ended, "{text}");
}
