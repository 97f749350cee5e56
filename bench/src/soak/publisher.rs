//! A soak publisher: owns some topics (so each topic has one publisher and
//! its acks arrive in `seq` order), publishes to them in turn at its share
//! of the rate in 1 ms ticks, and reads the acks in a task of its own (a
//! publisher blocked writing must still read, or the server, which stops
//! reading a connection that leaves its replies unread, would never ack).

use super::ledger::Ledger;
use super::session::Ended;
use super::subscriber::Conn;
use super::wire::{self, FrameReader, ServerFrame, WsItem};
use super::{Ctx, Ending, Phase};
use crate::proto::{self, Target};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedReadHalf;

/// What the writer and the ack reader share.
#[derive(Default)]
struct Shared {
    /// Publishes answered (acked or refused).
    answered: Cell<u64>,
    pongs: RefCell<Vec<u8>>,
    ended: RefCell<Option<Ended>>,
    shutting_down_at: Cell<Option<f64>>,
    /// We sent the close frame: the end that follows is ours.
    closing: Cell<bool>,
}

pub async fn run(owned: Vec<usize>, rate: f64, payload: usize, ctx: Rc<Ctx>) {
    let Some(conn) = Conn::open(&ctx, None).await else {
        return;
    };
    let (stream, reader) = conn.into_parts();
    let (read_half, mut write) = stream.into_split();
    let shared = Rc::new(Shared::default());
    let reading = tokio::task::spawn_local(read_acks(
        read_half,
        reader,
        owned.clone(),
        Rc::clone(&shared),
        Rc::clone(&ctx),
    ));
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Instant::now();
    let base = Instant::now();
    let mut sent = 0u64;
    let mut buf = Vec::new();
    while ctx.phase.get() == Phase::Run && shared.ended.borrow().is_none() {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        {
            let mut ledger = ctx.ledger.borrow_mut();
            while sent < due {
                let t = owned[(sent % owned.len() as u64) as usize];
                let p = proto::payload(base.elapsed().as_nanos() as u64, payload);
                proto::frame_publish(Target::Pubsub, &mut buf, &ledger.topics[t].name, &p);
                ledger.topics[t].sent += 1;
                sent += 1;
            }
        }
        buf.append(&mut shared.pongs.borrow_mut());
        if !buf.is_empty() {
            if let Err(e) = write.write_all(&buf).await {
                // In the shutdown phase the server stops reading and
                // closes: a failed write then is expected.
                if !ctx.expect_shutdown {
                    shared
                        .ended
                        .borrow_mut()
                        .get_or_insert(Ended::Io(e.to_string()));
                }
                break;
            }
            buf.clear();
        }
    }
    if !ctx.expect_shutdown {
        // Every publish answered, then a clean close.
        let waiting = Instant::now();
        while shared.answered.get() < sent
            && shared.ended.borrow().is_none()
            && waiting.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if shared.answered.get() < sent {
            let mut ledger = ctx.ledger.borrow_mut();
            let missing = sent - shared.answered.get();
            ledger
                .errors
                .unexpected_frame("publishes never answered", format!("{missing} of {sent}"));
        }
        shared.closing.set(true);
        let _ = write.write_all(&wire::close_frame(1000)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), reading).await;
}

async fn read_acks(
    mut read: OwnedReadHalf,
    mut reader: FrameReader,
    owned: Vec<usize>,
    shared: Rc<Shared>,
    ctx: Rc<Ctx>,
) {
    loop {
        let got = reader.fill(&mut read).await;
        {
            let mut ledger = ctx.ledger.borrow_mut();
            reader.drain(|item| on_item(item, &owned, &shared, &mut ledger, ctx.expect_shutdown));
        }
        shared.pongs.borrow_mut().append(&mut reader.pongs);
        match got {
            Ok(0) => {
                shared.ended.borrow_mut().get_or_insert(Ended::Eof);
            }
            Err(e) => {
                shared
                    .ended
                    .borrow_mut()
                    .get_or_insert(Ended::Io(e.to_string()));
            }
            Ok(_) => {}
        }
        if shared.ended.borrow().is_some() {
            break;
        }
    }
    let ended = shared.ended.borrow().clone();
    if ctx.expect_shutdown {
        let ledger = ctx.ledger.borrow();
        let now = ledger.now();
        ctx.endings.borrow_mut().push(Ending {
            publisher: true,
            shutting_down_at: shared.shutting_down_at.get(),
            ended,
            ended_at: now,
            events_after_notice: 0,
            last: owned
                .iter()
                .map(|&t| (t, ledger.topics[t].acked_seq))
                .collect(),
        });
    } else if !shared.closing.get() {
        let kind = ended.as_ref().map(Ended::key).unwrap_or_default();
        let detail = ended.as_ref().map(Ended::detail).unwrap_or_default();
        ctx.ledger
            .borrow_mut()
            .errors
            .unexpected_close(format!("publisher {kind}"), &detail);
    }
}

fn on_item(
    item: WsItem<'_>,
    owned: &[usize],
    shared: &Shared,
    ledger: &mut Ledger,
    expect_shutdown: bool,
) {
    let text = match item {
        WsItem::Text(text) => text,
        WsItem::Ping => return,
        WsItem::Close(code, reason) => {
            shared
                .ended
                .borrow_mut()
                .get_or_insert(Ended::Close(code, reason));
            return;
        }
        WsItem::Unexpected(first) => {
            ledger
                .errors
                .unexpected_frame("websocket frame", format!("first byte {first:#04x}"));
            return;
        }
    };
    let frame = match wire::parse(text, |n| ledger.topic_index(n)) {
        Ok(frame) => frame,
        Err(why) => {
            ledger
                .errors
                .malformed(format!("{why}: {}", wire::excerpt(text)));
            return;
        }
    };
    match frame {
        ServerFrame::Ack {
            topic: Some(t),
            seq: Some(seq),
            ..
        } if owned.contains(&t) => {
            shared.answered.set(shared.answered.get() + 1);
            let topic = &mut ledger.topics[t];
            if seq != topic.acked_seq + 1 {
                let note = format!("{}: seq {seq} after {}", topic.name, topic.acked_seq);
                ledger
                    .errors
                    .unexpected_frame("publish ack out of order", note);
                let topic = &mut ledger.topics[t];
                topic.acked_seq = topic.acked_seq.max(seq);
            } else {
                topic.acked_seq = seq;
            }
            ledger.topics[t].acked += 1;
        }
        ServerFrame::Ack { .. } => ledger.errors.malformed(format!(
            "publish ack without our topic or seq: {}",
            wire::excerpt(text)
        )),
        ServerFrame::Error { code, message, .. } => {
            shared.answered.set(shared.answered.get() + 1);
            ledger.errors.error_frame(&code, &message);
        }
        ServerFrame::Info { msg } => match msg.as_str() {
            "ping" => {}
            "shutting_down" if expect_shutdown => {
                if shared.shutting_down_at.get().is_none() {
                    shared.shutting_down_at.set(Some(ledger.now()));
                }
            }
            _ => ledger
                .errors
                .unexpected_frame(&format!("info {msg}"), wire::excerpt(text)),
        },
        ServerFrame::Event { .. } | ServerFrame::Pong => ledger
            .errors
            .unexpected_frame("frame to a publisher", wire::excerpt(text)),
    }
}
