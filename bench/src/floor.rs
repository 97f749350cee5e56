//! The floor: a WebSocket server with no broker logic. Each publish frame
//! is wrapped once into a pre-encoded event frame and appended to every
//! subscriber's buffer, which its writer flushes in one write. Whatever a
//! broker does beyond this costs time; this is the best the machine, the
//! kernel's loopback and the generator allow.

use crate::ws;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpListener;
use tokio::sync::Notify;

struct Subscriber {
    pending: RefCell<Vec<u8>>,
    wake: Notify,
    /// The socket failed: pruned at the next publish.
    gone: std::cell::Cell<bool>,
}

/// Subscribers by topic: the one piece of routing a topic needs.
type Subscribers = Rc<RefCell<std::collections::HashMap<Vec<u8>, Vec<Rc<Subscriber>>>>>;

/// The value of `"topic":"…"` in a client frame.
fn topic_of(text: &[u8]) -> Vec<u8> {
    let Some(at) = ws::find(text, b"\"topic\":\"") else {
        return Vec::new();
    };
    let rest = &text[at + 9..];
    rest[..rest.iter().position(|b| *b == b'"').unwrap_or(rest.len())].to_vec()
}

pub async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let subscribers: Subscribers = Rc::default();
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let subscribers = Rc::clone(&subscribers);
        tokio::task::spawn_local(async move {
            let _ = connection(stream, subscribers).await;
        });
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    subscribers: Subscribers,
) -> std::io::Result<()> {
    let (mut read, mut write) = stream.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    // The upgrade request.
    loop {
        let n = read.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        if let Some(end) = ws::find(&buf[..len], b"\r\n\r\n") {
            buf.copy_within(end + 4..len, 0);
            len -= end + 4;
            break;
        }
    }
    write
        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
        .await?;
    let mut writer = Some(write);
    loop {
        let mut at = 0;
        while let Some(f) = ws::parse(&mut buf[at..len]) {
            let text = &buf[at + f.start..at + f.end];
            if ws::find(text, b"\"type\":\"subscribe\"").is_some() {
                if let Some(w) = writer.take() {
                    subscribe(w, topic_of(text), &subscribers);
                }
            } else if let Some(p) = ws::find(text, b"\"payload\":") {
                let topic = topic_of(text);
                let payload = &text[p + 10..text.len().saturating_sub(2)];
                let mut event = Vec::with_capacity(payload.len() + 96);
                event.extend_from_slice(b"{\"type\":\"event\",\"topic\":\"bench\",\"message\":{\"id\":\"x\",\"payload\":");
                event.extend_from_slice(payload);
                event.extend_from_slice(b"},\"seq\":0,\"ts\":\"\"}");
                let mut frame = Vec::with_capacity(event.len() + 4);
                ws::encode_server(&mut frame, 1, &event);
                let mut all = subscribers.borrow_mut();
                let Some(list) = all.get_mut(&topic) else {
                    at += f.end;
                    continue;
                };
                list.retain(|s| !s.gone.get());
                for s in list.iter() {
                    let mut pending = s.pending.borrow_mut();
                    let was_empty = pending.is_empty();
                    pending.extend_from_slice(&frame);
                    if was_empty {
                        s.wake.notify_one();
                    }
                }
            }
            at += f.end;
        }
        buf.copy_within(at..len, 0);
        len -= at;
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = read.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
    }
}

fn subscribe(mut write: OwnedWriteHalf, topic: Vec<u8>, subscribers: &Subscribers) {
    let me = Rc::new(Subscriber {
        pending: RefCell::new(Vec::new()),
        wake: Notify::new(),
        gone: std::cell::Cell::new(false),
    });
    let mut ack = Vec::new();
    ws::encode_server(&mut ack, 1, b"{\"type\":\"ack\",\"request_id\":\"s\"}");
    me.pending.borrow_mut().extend_from_slice(&ack);
    me.wake.notify_one();
    subscribers
        .borrow_mut()
        .entry(topic)
        .or_default()
        .push(Rc::clone(&me));
    tokio::task::spawn_local(async move {
        let mut out = Vec::new();
        loop {
            if me.pending.borrow().is_empty() {
                me.wake.notified().await;
                continue;
            }
            std::mem::swap(&mut out, &mut *me.pending.borrow_mut());
            if write.write_all(&out).await.is_err() {
                me.gone.set(true);
                me.pending.borrow_mut().clear();
                return;
            }
            out.clear();
        }
    });
}
