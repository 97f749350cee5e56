//! One subscriber connection's view of its topics, and the checks it makes
//! on every frame: `seq`s strictly increasing and contiguous unless a
//! `SLOW_CONSUMER` notice announced the gap; a recovered replay complete
//! from since.seq + 1 to the ack's `seq`; an unrecovered `since` only when
//! history could not hold it. Everything it finds goes into the ledger.

use super::ledger::Ledger;
use super::wire::{self, ServerFrame, WsItem};

/// Where a subscriber is in a topic, across its connections: the `since`
/// of its next subscribe.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    pub topic: usize,
    pub seen: Option<(u64, String)>,
}

/// A recovered replay being checked.
#[derive(Debug)]
struct Replay {
    next: u64,
    until: u64,
}

/// One subscription on this connection.
#[derive(Debug)]
pub struct Sub {
    pub topic: usize,
    /// The `since` sent with the subscribe, if any.
    since: Option<u64>,
    /// The ack's `seq`: events above it are live.
    pub start: Option<u64>,
    /// The last `seq` received on this connection.
    pub last: u64,
    replay: Option<Replay>,
    /// Events a `SLOW_CONSUMER` notice announced, not yet seen as a gap.
    owed: u64,
}

/// How the server ended the connection, as seen by the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    Close(Option<u16>, String),
    Eof,
    Io(String),
}

impl Ended {
    /// What happened in detail (the close reason, the I/O error).
    pub fn detail(&self) -> String {
        match self {
            Ended::Close(_, reason) => reason.clone(),
            Ended::Eof => String::new(),
            Ended::Io(e) => e.clone(),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Ended::Close(Some(code), _) => format!("close {code}"),
            Ended::Close(None, _) => "close (no code)".into(),
            Ended::Eof => "eof without close frame".into(),
            Ended::Io(_) => "io error".into(),
        }
    }
}

/// What one connection has seen.
#[derive(Debug, Default)]
pub struct Session {
    pub subs: Vec<Sub>,
    /// `info shutting_down` arrived (seconds on the ledger's clock).
    pub shutting_down_at: Option<f64>,
    /// Events received after `info shutting_down`.
    pub events_after_notice: u64,
    pub ended: Option<Ended>,
    /// Frames after the close frame (the contract allows none).
    pub frames_after_close: u64,
    /// `info shutting_down` is the expected end (the shutdown phase).
    pub expect_shutdown: bool,
    /// Frames of any kind (for "did the connection go quiet").
    pub frames: u64,
}

impl Session {
    /// The subscribe request for each cursor, with `since` when known.
    pub fn subscribe(cursors: &[Cursor], ledger: &Ledger, tag: usize) -> (Session, Vec<u8>) {
        let mut out = Vec::new();
        let mut subs = Vec::new();
        for c in cursors {
            let mut req = serde_json::json!({
                "type": "subscribe",
                "topic": ledger.topics[c.topic].name,
                "request_id": format!("s{tag}-{}", c.topic),
            });
            if let Some((seq, epoch)) = &c.seen {
                req["since"] = serde_json::json!({ "seq": seq, "epoch": epoch });
            }
            subs.push(Sub {
                topic: c.topic,
                since: c.seen.as_ref().map(|(s, _)| *s),
                start: None,
                last: 0,
                replay: None,
                owed: 0,
            });
            out.push(req);
        }
        let session = Session {
            subs,
            ..Session::default()
        };
        (
            session,
            out.into_iter().flat_map(|r| wire::text_frame(&r)).collect(),
        )
    }

    pub fn all_acked(&self) -> bool {
        self.subs.iter().all(|s| s.start.is_some())
    }

    fn sub(&mut self, topic: Option<usize>) -> Option<&mut Sub> {
        let topic = topic?;
        self.subs.iter_mut().find(|s| s.topic == topic)
    }

    /// Handles one WebSocket item; `history_size` decides whether a
    /// `recovered: false` was justified.
    pub fn on_item(
        &mut self,
        item: WsItem<'_>,
        ledger: &mut Ledger,
        cursors: &mut [Cursor],
        history_size: u64,
    ) {
        self.frames += 1;
        if self.ended.is_some() {
            self.frames_after_close += 1;
            return;
        }
        match item {
            WsItem::Ping => {}
            WsItem::Close(code, reason) => self.ended = Some(Ended::Close(code, reason)),
            WsItem::Unexpected(first) => ledger
                .errors
                .unexpected_frame("websocket frame", format!("first byte {first:#04x}")),
            WsItem::Text(text) => match wire::parse(text, |n| ledger.topic_index(n)) {
                Ok(frame) => self.on_frame(frame, text, ledger, cursors, history_size),
                Err(why) => ledger
                    .errors
                    .malformed(format!("{why}: {}", wire::excerpt(text))),
            },
        }
    }

    fn on_frame(
        &mut self,
        frame: ServerFrame,
        text: &[u8],
        ledger: &mut Ledger,
        cursors: &mut [Cursor],
        history_size: u64,
    ) {
        match frame {
            ServerFrame::Event { topic, seq } => {
                if self.shutting_down_at.is_some() {
                    self.events_after_notice += 1;
                }
                let Some(sub) = self.sub(topic) else {
                    ledger
                        .errors
                        .unexpected_frame("event of an unsubscribed topic", wire::excerpt(text));
                    return;
                };
                on_event(sub, seq, ledger, text);
                let t = sub.topic;
                if let Some(c) = cursors.iter_mut().find(|c| c.topic == t) {
                    c.seen = Some((seq, ledger.topics[t].epoch.clone()));
                }
            }
            ServerFrame::Ack {
                topic,
                seq,
                epoch,
                replayed,
                recovered,
                ..
            } => {
                let Some(sub) = self.sub(topic) else {
                    ledger
                        .errors
                        .unexpected_frame("ack of another topic", wire::excerpt(text));
                    return;
                };
                if sub.start.is_some() {
                    ledger
                        .errors
                        .unexpected_frame("second ack", wire::excerpt(text));
                    return;
                }
                let (Some(seq), Some(epoch), Some(replayed)) = (seq, epoch, replayed) else {
                    ledger.errors.malformed(format!(
                        "subscribe ack without seq, epoch or replayed: {}",
                        wire::excerpt(text)
                    ));
                    return;
                };
                on_ack(
                    sub,
                    seq,
                    &epoch,
                    replayed,
                    recovered,
                    ledger,
                    history_size,
                    text,
                );
            }
            ServerFrame::Error {
                code,
                topic,
                dropped,
                message,
            } => {
                if code != "SLOW_CONSUMER" {
                    ledger.errors.error_frame(&code, &message);
                    return;
                }
                let Some(dropped) = dropped else {
                    ledger.errors.malformed(format!(
                        "SLOW_CONSUMER without dropped: {}",
                        wire::excerpt(text)
                    ));
                    return;
                };
                ledger.checks.slow_consumer_notices += 1;
                ledger.checks.slow_consumer_dropped += dropped;
                match self.sub(topic) {
                    Some(sub) => sub.owed += dropped,
                    None => ledger.errors.unexpected_frame(
                        "SLOW_CONSUMER for an unsubscribed topic",
                        wire::excerpt(text),
                    ),
                }
            }
            ServerFrame::Info { msg } => match msg.as_str() {
                "ping" => {}
                "shutting_down" if self.expect_shutdown && self.shutting_down_at.is_none() => {
                    self.shutting_down_at = Some(ledger.now());
                }
                _ => ledger
                    .errors
                    .unexpected_frame(&format!("info {msg}"), wire::excerpt(text)),
            },
            ServerFrame::Pong => ledger.errors.unexpected_frame("pong", wire::excerpt(text)),
        }
    }

    /// Closes the books of every subscription: it surely covered up to
    /// `surely(topic, last)`.
    pub fn end(&self, ledger: &mut Ledger, surely: impl Fn(&Ledger, usize, u64) -> u64) {
        for sub in &self.subs {
            match sub.start {
                Some(start) => {
                    let s = surely(ledger, sub.topic, sub.last.max(start));
                    ledger.end_subscription(sub.topic, start, s);
                }
                None => ledger.checks.unacked_subscriptions += 1,
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn on_ack(
    sub: &mut Sub,
    seq: u64,
    epoch: &str,
    replayed: u64,
    recovered: Option<bool>,
    ledger: &mut Ledger,
    history_size: u64,
    text: &[u8],
) {
    let topic = &ledger.topics[sub.topic];
    let same_epoch = epoch == topic.epoch;
    if !same_epoch {
        ledger.checks.epoch_changes += 1;
        ledger
            .errors
            .sample(format!("epoch changed: {}", wire::excerpt(text)));
    }
    ledger.checks.subscribes += 1;
    sub.start = Some(seq);
    sub.last = seq;
    let Some(since) = sub.since else {
        return;
    };
    ledger.checks.since_subscribes += 1;
    match recovered {
        Some(true) => {
            ledger.checks.recovered += 1;
            let expected = seq.saturating_sub(since);
            if replayed != expected || since > seq {
                ledger.checks.replays_bad += 1;
                ledger.errors.sample(format!(
                    "recovered replay announces {replayed} events for since {since}: {}",
                    wire::excerpt(text)
                ));
            }
            sub.last = since;
            if since < seq {
                sub.replay = Some(Replay {
                    next: since + 1,
                    until: seq,
                });
            } else {
                ledger.checks.replays_checked += 1;
            }
        }
        Some(false) => {
            ledger.checks.not_recovered += 1;
            ledger.checks.unrecovered_events += seq.saturating_sub(since);
            if same_epoch && since <= seq && seq - since <= history_size {
                ledger.checks.not_recovered_but_held += 1;
                ledger.errors.sample(format!(
                    "not recovered although history held since {since}: {}",
                    wire::excerpt(text)
                ));
            }
        }
        None => ledger
            .errors
            .unexpected_frame("ack without recovered after since", wire::excerpt(text)),
    }
}

fn on_event(sub: &mut Sub, seq: u64, ledger: &mut Ledger, text: &[u8]) {
    let Some(start) = sub.start else {
        ledger
            .errors
            .unexpected_frame("event before its subscribe ack", wire::excerpt(text));
        return;
    };
    let c = &mut ledger.checks;
    if let Some(r) = &mut sub.replay {
        if seq == r.next && seq <= r.until {
            c.replayed_events += 1;
            r.next += 1;
            sub.last = seq;
            if seq == r.until {
                c.replays_checked += 1;
                sub.replay = None;
            }
            return;
        }
        // A gap inside a replay is fine only when announced.
        if seq > r.next && seq <= r.until && sub.owed > 0 {
            check_gap(sub.owed, seq - r.next, c);
            sub.owed = 0;
            c.replayed_events += 1;
            r.next = seq + 1;
            sub.last = seq;
            if seq == r.until {
                c.replays_checked += 1;
                sub.replay = None;
            }
            return;
        }
        c.replays_bad += 1;
        ledger.errors.sample(format!(
            "replay expected seq {} (until {}), got {seq}",
            r.next, r.until
        ));
        sub.replay = None;
        // Go on checking from here.
        sub.last = sub.last.max(seq);
        if seq > start {
            c.live_events += 1;
            ledger.topics[sub.topic].live += 1;
        } else {
            c.replayed_events += 1;
        }
        return;
    }
    if seq <= sub.last {
        c.out_of_order += 1;
        ledger.errors.sample(format!(
            "seq {seq} after {} on {}",
            sub.last, ledger.topics[sub.topic].name
        ));
        return;
    }
    if seq > sub.last + 1 {
        let gap = seq - sub.last - 1;
        if sub.owed > 0 {
            check_gap(sub.owed, gap, c);
        } else {
            c.gaps_without_notice += 1;
            ledger.errors.sample(format!(
                "gap without SLOW_CONSUMER on {}: {} then {seq}",
                ledger.topics[sub.topic].name, sub.last
            ));
        }
        sub.owed = 0;
    } else if sub.owed > 0 && seq > start {
        // A notice, then no gap.
        c.notice_gap_mismatch += 1;
        sub.owed = 0;
    }
    sub.last = seq;
    if seq > start {
        c.live_events += 1;
        ledger.topics[sub.topic].live += 1;
    } else {
        c.replayed_events += 1;
    }
}

fn check_gap(owed: u64, gap: u64, c: &mut super::ledger::Checks) {
    c.gaps_with_notice += 1;
    if owed != gap {
        c.notice_gap_mismatch += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::ledger::{Base, TopicLedger};
    use super::*;

    fn ledger() -> Ledger {
        Ledger::new(vec![TopicLedger::new(
            "soak-0".into(),
            "E".into(),
            Base::default(),
        )])
    }

    fn text(s: &str) -> WsItem<'_> {
        WsItem::Text(s.as_bytes())
    }

    fn event(seq: u64) -> String {
        format!(
            r#"{{"type":"event","topic":"soak-0","message":{{"id":"i","payload":1}},"seq":{seq},"ts":"t"}}"#
        )
    }

    #[test]
    fn recovered_replay_then_live_with_an_announced_gap() {
        let mut l = ledger();
        let mut cursors = vec![Cursor {
            topic: 0,
            seen: Some((5, "E".into())),
        }];
        let (mut s, mut req) = Session::subscribe(&cursors, &l, 1);
        let f = crate::ws::parse(&mut req).unwrap();
        let sent = String::from_utf8_lossy(&req[f.start..f.end]).into_owned();
        assert!(sent.contains(r#""topic":"soak-0""#), "{sent}");
        assert!(sent.contains(r#""since":{"seq":5,"epoch":"E"}"#), "{sent}");
        let ack = r#"{"type":"ack","request_id":"s","topic":"soak-0","status":"ok","seq":8,"epoch":"E","replayed":3,"recovered":true,"ts":"t"}"#;
        s.on_item(text(ack), &mut l, &mut cursors, 100);
        for seq in [6, 7, 8, 9] {
            s.on_item(text(&event(seq)), &mut l, &mut cursors, 100);
        }
        let slow = r#"{"type":"error","error":{"code":"SLOW_CONSUMER","message":"m"},"topic":"soak-0","dropped":2,"ts":"t"}"#;
        s.on_item(text(slow), &mut l, &mut cursors, 100);
        s.on_item(text(&event(12)), &mut l, &mut cursors, 100);
        let c = &l.checks;
        assert_eq!((c.recovered, c.replays_checked, c.replays_bad), (1, 1, 0));
        assert_eq!((c.replayed_events, c.live_events), (3, 2));
        assert_eq!(
            (
                c.gaps_with_notice,
                c.notice_gap_mismatch,
                c.gaps_without_notice
            ),
            (1, 0, 0)
        );
        assert_eq!(l.topics[0].live, 2);
        assert_eq!(cursors[0].seen, Some((12, "E".into())));
        assert_eq!(l.errors.total(), 0);
    }

    #[test]
    fn silent_gaps_bad_replays_and_refusals_are_counted() {
        let mut l = ledger();
        let mut cursors = vec![Cursor {
            topic: 0,
            seen: Some((5, "E".into())),
        }];
        let (mut s, _) = Session::subscribe(&cursors, &l, 1);
        let ack = r#"{"type":"ack","request_id":"s","topic":"soak-0","status":"ok","seq":8,"epoch":"E","replayed":3,"recovered":true,"ts":"t"}"#;
        s.on_item(text(ack), &mut l, &mut cursors, 100);
        for seq in [7, 8, 10, 10] {
            s.on_item(text(&event(seq)), &mut l, &mut cursors, 100);
        }
        assert_eq!(l.checks.replays_bad, 1);
        assert_eq!(l.checks.gaps_without_notice, 1);
        assert_eq!(l.checks.out_of_order, 1);

        let (mut s, _) = Session::subscribe(&cursors, &l, 2);
        let refused = r#"{"type":"ack","request_id":"s","topic":"soak-0","status":"ok","seq":60,"epoch":"E","replayed":0,"recovered":false,"ts":"t"}"#;
        s.on_item(text(refused), &mut l, &mut cursors, 100);
        assert_eq!(l.checks.not_recovered_but_held, 1);
        s.on_item(text("{not json"), &mut l, &mut cursors, 100);
        s.on_item(
            text(r#"{"type":"info","msg":"shutting_down","ts":"t"}"#),
            &mut l,
            &mut cursors,
            100,
        );
        assert_eq!(l.errors.malformed, 1);
        assert_eq!(
            l.errors.unexpected_frames.get("info shutting_down"),
            Some(&1)
        );
        s.end(&mut l, |_, _, last| last);
        assert_eq!(l.topics[0].lower, 0);
    }
}
