//! What the browser's WebSocket sessions share: the URL of `/ws` (with the
//! tab's API key, since browsers cannot set headers on an upgrade), the
//! backoff between reconnects, and how a server frame is read. Used by the
//! live panel ([`crate::live`]) and the presence watch
//! ([`crate::presence`]); each runs its own connection.

#[cfg(any(feature = "hydrate", test))]
use crate::wire::ServerFrame;

/// Waits between reconnect attempts, in milliseconds: the last one repeats.
#[cfg(any(feature = "hydrate", test))]
const BACKOFF_MS: [u32; 5] = [500, 1000, 2000, 4000, 8000];

/// The wait before reconnect attempt `attempt` (0 for the first).
#[cfg(any(feature = "hydrate", test))]
pub(crate) fn backoff(attempt: u32) -> u32 {
    BACKOFF_MS[(attempt as usize).min(BACKOFF_MS.len() - 1)]
}

/// `ws://` or `wss://` (as the page was loaded) to this server's `/ws`.
#[cfg(feature = "hydrate")]
pub(crate) fn url() -> String {
    let location = leptos::prelude::window().location();
    let scheme = if location.protocol().as_deref() == Ok("https:") {
        "wss"
    } else {
        "ws"
    };
    format!(
        "{scheme}://{}/ws{}",
        location.host().unwrap_or_default(),
        crate::auth::token_query()
    )
}

/// A server frame from its text, or `None` when it is not one.
///
/// Not `serde_json::from_str::<ServerFrame>`: serde reads an internally
/// tagged enum (`"type"` inside the object) by buffering the whole frame
/// into an intermediate tree and reading every variant from that, code that
/// weighed about 48 KB of the browser's WASM. Here the tag is read first
/// (the other fields skipped), then the frame straight into its variant's
/// struct, which ignores the `type` field as an unknown one. Same result.
#[cfg(any(feature = "hydrate", test))]
pub(crate) fn parse(text: &str) -> Option<ServerFrame> {
    #[derive(serde::Deserialize)]
    struct Tag<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    let tag: Tag = serde_json::from_str(text).ok()?;
    let frame = match &*tag.kind {
        "ack" => serde_json::from_str(text).map(ServerFrame::Ack),
        "event" => serde_json::from_str(text).map(ServerFrame::Event),
        "error" => serde_json::from_str(text).map(ServerFrame::Error),
        "pong" => serde_json::from_str(text).map(ServerFrame::Pong),
        "info" => serde_json::from_str(text).map(ServerFrame::Info),
        "presence" => serde_json::from_str(text).map(ServerFrame::Presence),
        _ => return None,
    };
    frame.ok()
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::wire::ServerFrame;

    /// Every kind of frame reads as serde's own reading of the enum does.
    #[test]
    fn frames_read_as_the_wire_type_says() {
        let frames = [
            r#"{"type":"ack","request_id":"r","topic":"t","status":"ok","seq":3,"epoch":"e","replayed":1,"ts":"x"}"#,
            r#"{"type":"ack","request_id":null,"topic":"o.*","status":"ok","pattern":true,"topics":{"o.a":{"seq":1,"epoch":"e","replayed":0}},"ts":"x"}"#,
            r#"{"type":"event","topic":"t","message":{"id":"m","payload":{"a":[1,"b"]}},"seq":4,"ts":"x"}"#,
            r#"{"type":"error","request_id":"r","error":{"code":"SLOW_CONSUMER","message":"m"},"topic":"t","dropped":2,"ts":"x"}"#,
            r#"{"type":"pong","request_id":"p","ts":"x"}"#,
            r#"{"type":"info","msg":"join","topic":"t","client":{"client_id":null,"connection_id":7,"joined_at":"x"},"ts":"x"}"#,
            r#"{"ts":"x","msg":"topic_created","topic":"o.b","epoch":"e2","type":"info"}"#,
            r#"{"type":"presence","request_id":"q","topic":"t","count":0,"clients":[],"ts":"x"}"#,
        ];
        for text in frames {
            let expected: ServerFrame = serde_json::from_str(text).expect(text);
            assert_eq!(parse(text), Some(expected), "{text}");
        }
        for text in [
            r#"{"type":"nope"}"#,
            r#"{"topic":"t"}"#,
            "[1]",
            r#"{"type":"pong"}"#,
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn backoff_grows_then_stays() {
        let waits: Vec<u32> = (0..7).map(super::backoff).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }
}
