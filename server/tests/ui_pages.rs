//! The UI's pages as a browser first gets them: the HTML the server
//! renders, before any script runs. The dashboard, the topic list and a
//! topic page show their data (no "Loading…"); with API keys on, a page
//! shows only what its own request may read over REST.

mod common;

use common::TestServer;
use serde_json::json;

/// The page at `path` as plain HTML, with `key` as a bearer token if given.
async fn page(s: &TestServer, path: &str, key: Option<&str>) -> String {
    let mut request = s.http.get(s.url(path));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = request.send().await.expect("page");
    assert_eq!(response.status(), 200, "GET {path}");
    response.text().await.expect("body")
}

/// The element whose opening tag contains `marker` (the first one), up to
/// its matching `</tag>`.
fn element<'a>(html: &'a str, marker: &str, tag: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in the page"));
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let start = html[..at].rfind(&open).expect("opening tag");
    let mut depth = 0;
    let mut i = start;
    loop {
        let next_open = html[i + 1..].find(&open).map(|j| i + 1 + j);
        let next_close = html[i + 1..]
            .find(&close)
            .map(|j| i + 1 + j)
            .expect("closing tag");
        match next_open {
            Some(o) if o < next_close => {
                depth += 1;
                i = o;
            }
            _ if depth == 0 => return &html[start..next_close + close.len()],
            _ => {
                depth -= 1;
                i = next_close;
            }
        }
    }
}

/// The value shown on one of the dashboard's cards.
fn card(dashboard: &str, id: &str) -> String {
    let card = element(dashboard, &format!("data-testid=\"{id}\""), "div");
    text(element(card, "class=\"stat-value\"", "div"))
}

/// The text of an element, markup (Leptos' hydration markers included)
/// left out.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

const MARKER: &str = "rendered-by-the-server";

/// A topic with three messages, and the sampler's view of them: the
/// dashboard's busiest-topics chart reads the samples.
async fn topic_with_messages(s: &TestServer, name: &str, key: Option<&str>) {
    let send = |method: reqwest::Method, path: String, body| {
        let mut request = s.http.request(method, s.url(&path)).json(&body);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request
    };
    let created = send(
        reqwest::Method::POST,
        "/api/topics".into(),
        json!({"name": name}),
    )
    .send()
    .await
    .expect("create");
    assert_eq!(created.status(), 201);
    for n in 1..=3 {
        let published = send(
            reqwest::Method::POST,
            format!("/api/topics/{name}/messages"),
            json!({"payload": {"n": n, "note": MARKER}}),
        )
        .send()
        .await
        .expect("publish");
        assert_eq!(published.status(), 201);
    }
    let sampled = s.state.sampler.clone();
    s.eventually("a sample counts the messages", || {
        let sampled = sampled.clone();
        async move {
            sampled
                .last(None)
                .iter()
                .any(|sample| sample.busiest.iter().any(|t| t.name == name))
        }
    })
    .await;
}

#[tokio::test]
async fn pages_are_rendered_with_their_data() {
    let s = TestServer::start().await;
    topic_with_messages(&s, "ssr-orders", None).await;

    let topics = page(&s, "/topics", None).await;
    assert!(!topics.contains("Loading"), "{topics}");
    let row = text(element(&topics, "data-topic=\"ssr-orders\"", "tr"));
    assert!(row.starts_with("ssr-orders"), "{row}");
    // Name, subscribers, messages, created: "ssr-orders" "0" "3" "20…".
    assert!(row.contains("ssr-orders03"), "{row}");

    let topic = page(&s, "/topics/ssr-orders", None).await;
    assert!(!topic.contains("Loading"), "{topic}");
    assert_eq!(text(element(&topic, "data-testid=\"meta-seq\"", "dd")), "3");
    assert_eq!(
        text(element(&topic, "data-testid=\"meta-messages\"", "dd")),
        "3"
    );
    let history = element(&topic, "data-testid=\"history\"", "section");
    for seq in 1..=3 {
        assert!(
            history.contains(&format!("data-seq=\"{seq}\"")),
            "{history}"
        );
    }
    assert!(history.contains(MARKER), "{history}");
    assert!(!history.contains("No messages in history"), "{history}");

    let dashboard = page(&s, "/", None).await;
    assert_eq!(card(&dashboard, "card-published"), "3");
    assert_eq!(card(&dashboard, "card-topics"), "1");
    let busiest = element(&dashboard, "data-testid=\"chart-busiest\"", "figure");
    assert!(busiest.contains("ssr-orders"), "{busiest}");
    // The values travel in the page, for the browser's resources to start
    // from (no second fetch, no flash of "Loading").
    assert!(dashboard.contains("__RESOLVED_RESOURCES"));
}

#[tokio::test]
async fn a_missing_topic_is_said_so_on_the_first_paint() {
    let s = TestServer::start().await;
    let topic = page(&s, "/topics/nothing-here", None).await;
    let error = text(element(&topic, "data-testid=\"meta-error\"", "p"));
    assert!(error.starts_with("TOPIC_NOT_FOUND: "), "{error}");
    assert!(!topic.contains("Loading"), "{topic}");
}

#[tokio::test]
async fn with_keys_a_page_shows_only_what_its_request_may_read() {
    let s = TestServer::start_with(|c| {
        c.api_keys = ["adm=admin,publish", "sub=subscribe", "pub=publish"]
            .iter()
            .map(|k| k.parse().expect("key spec"))
            .collect();
    })
    .await;
    topic_with_messages(&s, "ssr-secret", Some("adm")).await;

    // No key: the loading states the browser fills in with its own key.
    // The name of a topic page is in its URL; nothing else is shown.
    let topics = page(&s, "/topics", None).await;
    assert!(!topics.contains("ssr-secret"), "{topics}");
    assert!(topics.contains("Loading topics…"));
    let topic = page(&s, "/topics/ssr-secret", None).await;
    assert!(!topic.contains("topic-meta"), "{topic}");
    assert!(!topic.contains(MARKER), "{topic}");
    assert_eq!(
        topic.matches("Loading…").count(),
        3,
        "metadata, presence and history"
    );
    let dashboard = page(&s, "/", None).await;
    assert!(!dashboard.contains("ssr-secret"), "{dashboard}");
    assert_eq!(card(&dashboard, "card-published"), "–");

    // A wrong key is no key.
    let topics = page(&s, "/topics", Some("nope")).await;
    assert!(!topics.contains("ssr-secret"), "{topics}");

    // A key without the subscribe role reads the topic, not its history.
    let topic = page(&s, "/topics/ssr-secret", Some("pub")).await;
    assert_eq!(text(element(&topic, "data-testid=\"meta-seq\"", "dd")), "3");
    assert!(!topic.contains(MARKER), "{topic}");

    // A key with it reads everything REST would give it.
    let topic = page(&s, "/topics/ssr-secret", Some("sub")).await;
    assert!(topic.contains(MARKER), "{topic}");
    assert!(!topic.contains("Loading"), "{topic}");
    let dashboard = page(&s, "/", Some("sub")).await;
    assert!(dashboard.contains("ssr-secret"));
}

/// The id of the one connection subscribed as `client_id`, from the REST board.
async fn connection_of(s: &TestServer, client_id: &str, key: Option<&str>) -> u64 {
    let mut request = s.http.get(s.url("/api/connections"));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let list: serde_json::Value = request
        .send()
        .await
        .expect("board")
        .json()
        .await
        .expect("json");
    list["connections"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["client_ids"] == json!([client_id])))
        .and_then(|c| c["id"].as_u64())
        .unwrap_or_else(|| panic!("no connection of {client_id}: {list}"))
}

#[tokio::test]
async fn the_connections_board_and_presence_are_rendered_with_their_data() {
    let s = TestServer::start().await;
    s.create_topic("ssr-board").await;
    let mut ws = s.ws().await;
    ws.subscribe("ssr-board", json!({"client_id": "ssr-watcher"}))
        .await;
    let id = connection_of(&s, "ssr-watcher", None).await;

    let board = page(&s, "/connections", None).await;
    assert!(!board.contains("Loading"), "{board}");
    let row = element(&board, &format!("data-connection=\"{id}\""), "div");
    let row_text = text(row);
    assert!(row_text.contains(&format!("#{id}")), "{row_text}");
    assert!(row_text.contains("ssr-watcher"), "{row_text}");
    assert!(row_text.contains("ssr-board"), "{row_text}");
    // The queue against its bound: 0 of the default 1,024.
    assert!(row_text.contains("0 / 1,024"), "{row_text}");
    let summary = text(element(&board, "data-testid=\"board-summary\"", "p"));
    assert!(
        summary.starts_with("1 connection(s) · 1 subscription(s)"),
        "{summary}"
    );

    let topic = page(&s, "/topics/ssr-board", None).await;
    let presence = element(&topic, "data-testid=\"presence\"", "table");
    let entry = text(element(
        presence,
        &format!("data-connection=\"{id}\""),
        "tr",
    ));
    assert!(entry.starts_with("ssr-watcher"), "{entry}");
    assert_eq!(
        text(element(&topic, "data-testid=\"presence-count\"", "strong")),
        "1"
    );
}

#[tokio::test]
async fn with_keys_the_board_is_rendered_for_an_admin_key_only() {
    let s = TestServer::start_with(|c| {
        c.api_keys = ["adm=admin,subscribe", "sub=subscribe"]
            .iter()
            .map(|k| k.parse().expect("key spec"))
            .collect();
    })
    .await;
    let mut ws = common::Ws::connect(&format!("ws://{}/ws?token=sub", s.addr)).await;
    let created = s
        .http
        .post(s.url("/api/topics"))
        .header("x-api-key", "adm")
        .json(&json!({"name": "ssr-keyed-board"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    ws.subscribe("ssr-keyed-board", json!({"client_id": "keyed-watcher"}))
        .await;
    let id = connection_of(&s, "keyed-watcher", Some("adm")).await;
    let marker = format!("data-connection=\"{id}\"");

    // No key, or a key without the admin role: the loading state, no row.
    for key in [None, Some("sub")] {
        let board = page(&s, "/connections", key).await;
        assert!(!board.contains(&marker), "{key:?}: {board}");
        assert!(!board.contains("keyed-watcher"), "{key:?}: {board}");
        assert!(board.contains("Loading…"), "{key:?}: {board}");
    }
    let dashboard = page(&s, "/", Some("sub")).await;
    assert!(!dashboard.contains("keyed-watcher"), "{dashboard}");

    // An admin key reads it, as over REST.
    let board = page(&s, "/connections", Some("adm")).await;
    assert!(board.contains(&marker), "{board}");
    assert!(board.contains("keyed-watcher"), "{board}");
    // Presence needs the subscribe role only.
    let topic = page(&s, "/topics/ssr-keyed-board", Some("sub")).await;
    assert!(topic.contains("keyed-watcher"), "{topic}");
}
