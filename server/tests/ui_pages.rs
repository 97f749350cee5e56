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
    assert_eq!(topic.matches("Loading…").count(), 2, "metadata and history");
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
