//! A topic's presence kept current in the browser: the topic page starts
//! from the list the server rendered, then [`watch`] subscribes to the
//! topic with `presence_events` and applies each `join` and `leave` as it
//! comes. Those notices are best effort (the server discards them before
//! any event when a queue fills), so after every subscribe, the first and
//! each one after a reconnect, the watch asks for the whole list with a
//! `presence` request and starts over from it.
//!
//! The watch writes the list into the page's presence resource, the one
//! the server filled, so the page shows one value whatever its source.
//!
//! The watch is an exact subscription itself: it is in the list (under a
//! client id of its own, which the page marks "this page") and counts as a
//! subscriber of the topic, as any presence-aware client would. Events of
//! the topic reach it too; it discards them unread.

use crate::reads::Loaded;
use crate::wire::Presence;
use leptos::prelude::*;

/// The watch's state, as the page says it (`None` before it starts: the
/// server's render and hydration).
pub const LIVE: &str = "live";
pub const RECONNECTING: &str = "reconnecting…";

/// What the watch writes besides the list, which it writes into the
/// page's own presence resource (the one the server filled): one value for
/// the page to show, and no second copy of it.
#[derive(Clone, Copy)]
pub struct PresenceView {
    /// [`LIVE`], [`RECONNECTING`], or why the watch ended.
    pub status: RwSignal<Option<String>>,
    /// The watch's own client id, to mark its row.
    pub me: RwSignal<Option<String>>,
    /// Bumped to stop the watch.
    generation: RwSignal<u64>,
}

impl PresenceView {
    pub fn new() -> Self {
        PresenceView {
            status: RwSignal::new(None),
            me: RwSignal::new(None),
            generation: RwSignal::new(0),
        }
    }

    /// Stops the watch, if it runs.
    pub fn stop(&self) {
        self.generation.try_update(|g| *g += 1);
    }
}

impl Default for PresenceView {
    fn default() -> Self {
        Self::new()
    }
}

/// The presence as a page's resource holds it.
pub type Shown = Resource<Loaded<Presence>>;

/// Applies a `join` or `leave` notice to `clients`. A connection holds at
/// most one exact subscription per topic, so its id is the row's key; a
/// join already listed (the `presence` answer saw it first) changes nothing.
#[cfg(any(feature = "hydrate", test))]
pub(crate) fn apply(
    clients: &mut Vec<crate::wire::PresenceClient>,
    kind: crate::wire::InfoKind,
    client: crate::wire::PresenceClient,
) {
    use crate::wire::InfoKind;
    // Connection ids are per node: in a cluster the node tells them apart.
    let same = |c: &crate::wire::PresenceClient| {
        c.connection_id == client.connection_id && c.node == client.node
    };
    let listed = clients.iter().any(same);
    match kind {
        InfoKind::Join if !listed => clients.push(client),
        InfoKind::Leave => clients.retain(|c| !same(c)),
        _ => {}
    }
}

#[cfg(feature = "hydrate")]
pub use browser::watch;

/// The watch runs in the browser only.
#[cfg(not(feature = "hydrate"))]
pub fn watch(_view: PresenceView, _shown: Shown, _topic: String) {}

#[cfg(feature = "hydrate")]
mod browser {
    use super::*;
    use crate::wire::{ClientFrame, ErrorCode, InfoKind, ServerFrame};
    use futures_util::future::{select, Either};
    use futures_util::{SinkExt, StreamExt};
    use gloo_net::websocket::{futures::WebSocket, Message};
    use gloo_timers::future::TimeoutFuture;

    const SUBSCRIBE: &str = "presence-subscribe";
    const READ: &str = "presence-read";
    /// Event frames as this server writes them: skipped without parsing
    /// (anything else is parsed, so another server's spelling still works).
    const EVENT_PREFIX: &str = "{\"type\":\"event\"";

    /// Starts watching `topic`'s presence into `shown` (the list) and
    /// `view`; a previous watch of this view stops.
    pub fn watch(view: PresenceView, shown: Shown, topic: String) {
        view.generation.update(|g| *g += 1);
        let generation = view.generation.get_untracked();
        let alive = move || view.generation.try_get_untracked() == Some(generation);
        // Unique enough to tell this page's row from another tab's.
        let me = format!(
            "web-ui:presence-{:06x}",
            (js_sys::Math::random() * f64::from(0xff_ffff)) as u32
        );
        view.me.set(Some(me.clone()));
        leptos::task::spawn_local(async move {
            let mut attempt: u32 = 0;
            while alive() {
                let mut socket = match WebSocket::open(&crate::socket::url()) {
                    Ok(socket) => socket,
                    Err(e) => return end(view, format!("Cannot open the WebSocket: {e}")),
                };
                let subscribe = ClientFrame::Subscribe {
                    topic: topic.clone(),
                    client_id: Some(me.clone()).filter(|_| !crate::auth::holds_token()),
                    last_n: None,
                    since: None,
                    presence_events: true,
                    request_id: Some(SUBSCRIBE.into()),
                };
                let text = serde_json::to_string(&subscribe).unwrap_or_default();
                if socket.send(Message::Text(text)).await.is_ok() {
                    let (mut sink, mut stream) = socket.split();
                    // Notices count only after the list they amend.
                    let mut listed = false;
                    loop {
                        let frame = match select(stream.next(), TimeoutFuture::new(250)).await {
                            Either::Left((frame, _)) => frame,
                            Either::Right(((), _)) if alive() => continue,
                            Either::Right(_) => None,
                        };
                        if !alive() {
                            let _ = sink.close().await;
                            return;
                        }
                        let text = match frame {
                            Some(Ok(Message::Text(text))) => text,
                            Some(Ok(Message::Bytes(_))) => continue,
                            Some(Err(_)) | None => break,
                        };
                        if text.starts_with(EVENT_PREFIX) {
                            continue;
                        }
                        let Some(frame) = crate::socket::parse(&text) else {
                            continue;
                        };
                        match frame {
                            ServerFrame::Ack(ack)
                                if ack.request_id.as_deref() == Some(SUBSCRIBE) =>
                            {
                                let read = ClientFrame::Presence {
                                    topic: topic.clone(),
                                    request_id: Some(READ.into()),
                                };
                                let text = serde_json::to_string(&read).unwrap_or_default();
                                if sink.send(Message::Text(text)).await.is_err() {
                                    break;
                                }
                            }
                            ServerFrame::Presence(p) if p.request_id.as_deref() == Some(READ) => {
                                listed = true;
                                attempt = 0;
                                let presence = Presence {
                                    topic: p.topic,
                                    count: p.count,
                                    clients: p.clients,
                                };
                                shown.try_update(|v| *v = Some(Loaded::Ready(presence)));
                                view.status.try_set(Some(LIVE.into()));
                            }
                            ServerFrame::Info(info) => match info.msg {
                                InfoKind::Join | InfoKind::Leave if listed => {
                                    if let Some(client) = info.client {
                                        shown.try_update(|v| {
                                            if let Some(Loaded::Ready(p)) = v {
                                                apply(&mut p.clients, info.msg, client);
                                                p.count = p.clients.len() as u64;
                                            }
                                        });
                                    }
                                }
                                InfoKind::TopicDeleted => {
                                    return end(view, "The topic was deleted.".into());
                                }
                                InfoKind::ClosedByAdmin => {
                                    return end(
                                        view,
                                        "An admin closed this page's presence watch.".into(),
                                    );
                                }
                                _ => {}
                            },
                            // A refusal of the watch's own requests ends it.
                            ServerFrame::Error(e)
                                if e.error.code != ErrorCode::SlowConsumer
                                    && e.request_id.is_some() =>
                            {
                                return end(view, format!("{}: {}", e.error.code, e.error.message));
                            }
                            _ => {}
                        }
                    }
                }
                if !alive() {
                    return;
                }
                view.status.try_set(Some(RECONNECTING.into()));
                TimeoutFuture::new(crate::socket::backoff(attempt)).await;
                attempt += 1;
            }
        });
    }

    fn end(view: PresenceView, why: String) {
        view.status.try_set(Some(why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{InfoKind, PresenceClient};

    fn client(connection_id: u64, id: Option<&str>) -> PresenceClient {
        PresenceClient {
            client_id: id.map(str::to_owned),
            connection_id,
            joined_at: String::new(),
            node: None,
        }
    }

    #[test]
    fn connection_ids_of_different_nodes_are_different_clients() {
        let on = |node: &str| PresenceClient {
            node: Some(node.into()),
            ..client(4, Some("x"))
        };
        let mut list = vec![on("a")];
        apply(&mut list, InfoKind::Join, on("b"));
        assert_eq!(list.len(), 2);
        apply(&mut list, InfoKind::Leave, on("b"));
        assert_eq!(list, vec![on("a")]);
    }

    #[test]
    fn joins_add_once_and_leaves_remove_by_connection() {
        let mut list = vec![client(1, Some("a"))];
        apply(&mut list, InfoKind::Join, client(2, None));
        apply(&mut list, InfoKind::Join, client(2, None));
        assert_eq!(list.len(), 2, "a join already listed is not doubled");
        apply(&mut list, InfoKind::Leave, client(1, Some("a")));
        assert_eq!(list, vec![client(2, None)]);
        apply(&mut list, InfoKind::Leave, client(9, None));
        apply(&mut list, InfoKind::Ping, client(3, None));
        assert_eq!(list.len(), 1);
    }
}
