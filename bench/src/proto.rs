//! The four peers' protocols, as lean as a benchmark client can be: raw
//! sockets, no JSON tree per message, payloads scanned for the send time.
//!
//! - `pubsub` and `floor`: this project's contract over WebSocket.
//! - `nats-tcp`: the NATS text protocol; `nats-ws`: the same inside
//!   WebSocket frames (nats-server's WebSocket listener).
//! - `redis`: RESP pub/sub.

use crate::ws;
use clap::ValueEnum;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Pubsub,
    NatsWs,
    NatsTcp,
    Redis,
    /// Pre-encoded WebSocket frames written with no broker logic.
    Floor,
}

impl Target {
    fn is_ws(self) -> bool {
        matches!(self, Target::Pubsub | Target::NatsWs | Target::Floor)
    }
}

/// Connects from `source` (an address of 127.0.0.0/8), so that many
/// connections do not exhaust one address's ephemeral ports.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    // Small buffers: 19,000 idle connections must fit in memory on both sides.
    socket.set_recv_buffer_size(64 * 1024)?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A message payload of `size` bytes carrying its send time:
/// `{"t":NANOS,"p":"xxx…"}`.
pub fn payload(t_nanos: u64, size: usize) -> Vec<u8> {
    let mut p = format!("{{\"t\":{t_nanos},\"p\":\"").into_bytes();
    let pad = size.saturating_sub(p.len() + 2);
    p.extend(std::iter::repeat_n(b'x', pad));
    p.extend_from_slice(b"\"}");
    p
}

/// The send time in a message, if it carries one.
pub fn send_time(message: &[u8]) -> Option<u64> {
    // `"t":`, wherever it stands in the message; no other key of any
    // peer's frame is spelled `t`.
    let at = ws::find(message, b"\"t\":")? + 4;
    let mut t: u64 = 0;
    let mut seen = false;
    for &b in &message[at..] {
        if b.is_ascii_digit() {
            t = t * 10 + u64::from(b - b'0');
            seen = true;
        } else {
            break;
        }
    }
    seen.then_some(t)
}

/// One open connection with its read buffer.
pub struct Conn {
    pub target: Target,
    pub stream: TcpStream,
    buf: Vec<u8>,
    len: usize,
    /// nats-ws: NATS protocol bytes taken out of WebSocket frames.
    inner: Vec<u8>,
}

impl Conn {
    pub async fn open(
        target: Target,
        addr: SocketAddr,
        source: Option<IpAddr>,
    ) -> std::io::Result<Conn> {
        let mut stream = connect(addr, source).await?;
        let mut leftover = Vec::new();
        if target.is_ws() {
            let path = if target == Target::NatsWs { "/" } else { "/ws" };
            leftover = ws::handshake(&mut stream, &addr.to_string(), path).await?;
        }
        let mut buf = vec![0u8; 64 * 1024];
        let len = leftover.len();
        buf[..len].copy_from_slice(&leftover);
        let mut conn = Conn {
            target,
            stream,
            buf,
            len,
            inner: Vec::new(),
        };
        if matches!(target, Target::NatsTcp | Target::NatsWs) {
            conn.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n")
                .await?;
        }
        Ok(conn)
    }

    /// Writes protocol bytes, framed for WebSocket peers.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(bytes.len() + 14);
        self.frame_into(&mut out, bytes);
        self.stream.write_all(&out).await
    }

    /// Appends `bytes` as this peer expects them on the wire.
    pub fn frame_into(&self, out: &mut Vec<u8>, bytes: &[u8]) {
        frame(self.target, out, bytes)
    }
}

/// Appends `bytes` as `target` expects them on the wire.
pub fn frame(target: Target, out: &mut Vec<u8>, bytes: &[u8]) {
    match target {
        Target::Pubsub | Target::Floor => ws::encode_client(out, 1, bytes),
        Target::NatsWs => ws::encode_client(out, 2, bytes),
        Target::NatsTcp | Target::Redis => out.extend_from_slice(bytes),
    }
}

/// Appends one publish of `payload` to `topic`.
pub fn frame_publish(target: Target, out: &mut Vec<u8>, topic: &str, payload: &[u8]) {
    let mut raw = Vec::with_capacity(payload.len() + 96);
    match target {
        Target::Pubsub | Target::Floor => {
            raw.extend_from_slice(b"{\"type\":\"publish\",\"topic\":\"");
            raw.extend_from_slice(topic.as_bytes());
            raw.extend_from_slice(b"\",\"message\":{\"payload\":");
            raw.extend_from_slice(payload);
            raw.extend_from_slice(b"}}");
        }
        Target::NatsTcp | Target::NatsWs => {
            raw.extend_from_slice(format!("PUB {topic} {}\r\n", payload.len()).as_bytes());
            raw.extend_from_slice(payload);
            raw.extend_from_slice(b"\r\n");
        }
        Target::Redis => {
            raw.extend_from_slice(
                format!(
                    "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{topic}\r\n${}\r\n",
                    topic.len(),
                    payload.len()
                )
                .as_bytes(),
            );
            raw.extend_from_slice(payload);
            raw.extend_from_slice(b"\r\n");
        }
    }
    frame(target, out, &raw);
}

impl Conn {
    /// Subscribes and waits until the peer confirms it.
    pub async fn subscribe(&mut self, topic: &str) -> std::io::Result<()> {
        match self.target {
            Target::Pubsub | Target::Floor => {
                self.send(
                    format!(
                        "{{\"type\":\"subscribe\",\"topic\":\"{topic}\",\"request_id\":\"s\"}}"
                    )
                    .as_bytes(),
                )
                .await?;
                self.wait_for(|m| ws::find(m, b"\"type\":\"ack\"").is_some())
                    .await
            }
            Target::NatsTcp | Target::NatsWs => {
                // PONG after SUB means the server has processed the SUB.
                self.send(format!("SUB {topic} 1\r\nPING\r\n").as_bytes())
                    .await?;
                self.wait_for(|m| m == b"PONG").await
            }
            Target::Redis => {
                self.send(
                    format!("*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{topic}\r\n", topic.len()).as_bytes(),
                )
                .await?;
                self.wait_for(|m| m == b"subscribe").await
            }
        }
    }

    async fn wait_for(&mut self, mut done: impl FnMut(&[u8]) -> bool) -> std::io::Result<()> {
        let mut found = false;
        while !found {
            self.read_some(|m| found |= done(m)).await?;
        }
        Ok(())
    }

    /// Reads once from the socket and calls `on_message` for every complete
    /// message (or control item: `PONG`, `subscribe`, acks) now buffered.
    /// Answers NATS `PING`s.
    pub async fn read_some(&mut self, mut on_message: impl FnMut(&[u8])) -> std::io::Result<usize> {
        if self.len == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.len..]).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed by the server",
            ));
        }
        self.len += n;
        let mut pings = 0;
        let consumed = match self.target {
            Target::Pubsub | Target::Floor => {
                let mut at = 0;
                while let Some(f) = ws::parse(&mut self.buf[at..self.len]) {
                    if f.opcode == 1 || f.opcode == 2 {
                        on_message(&self.buf[at + f.start..at + f.end]);
                    } else if f.opcode == 8 {
                        return Err(std::io::Error::other("close frame from the server"));
                    }
                    at += f.end;
                }
                at
            }
            Target::NatsWs => {
                let mut at = 0;
                while let Some(f) = ws::parse(&mut self.buf[at..self.len]) {
                    self.inner
                        .extend_from_slice(&self.buf[at + f.start..at + f.end]);
                    at += f.end;
                }
                let used = parse_nats(&self.inner, &mut on_message, &mut pings);
                self.inner.drain(..used);
                at
            }
            Target::NatsTcp => parse_nats(&self.buf[..self.len], &mut on_message, &mut pings),
            Target::Redis => parse_redis(&self.buf[..self.len], &mut on_message),
        };
        self.buf.copy_within(consumed..self.len, 0);
        self.len -= consumed;
        for _ in 0..pings {
            self.send(b"PONG\r\n").await?;
        }
        Ok(n)
    }
}

/// Parses NATS protocol items; returns the bytes consumed.
fn parse_nats(buf: &[u8], on_message: &mut impl FnMut(&[u8]), pings: &mut usize) -> usize {
    let mut at = 0;
    loop {
        let Some(eol) = ws::find(&buf[at..], b"\r\n") else {
            return at;
        };
        let line = &buf[at..at + eol];
        if line.starts_with(b"MSG ") {
            // MSG <subject> <sid> [reply-to] <#bytes>
            let size: usize = line
                .rsplit(|b| *b == b' ')
                .next()
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let start = at + eol + 2;
            if buf.len() < start + size + 2 {
                return at;
            }
            on_message(&buf[start..start + size]);
            at = start + size + 2;
        } else {
            if line == b"PING" {
                *pings += 1;
            } else if line == b"PONG" {
                on_message(b"PONG");
            }
            at += eol + 2;
        }
    }
}

/// Parses RESP push messages; returns the bytes consumed.
fn parse_redis(buf: &[u8], on_message: &mut impl FnMut(&[u8])) -> usize {
    let mut at = 0;
    loop {
        match parse_resp_array(&buf[at..]) {
            Some((used, items)) => {
                match items.as_slice() {
                    [kind, _, payload] if *kind == b"message" => on_message(payload),
                    [kind, ..] => on_message(kind),
                    [] => {}
                }
                at += used;
            }
            None => return at,
        }
    }
}

/// `*N\r\n` then N bulk strings or integers; `None` while incomplete.
fn parse_resp_array(buf: &[u8]) -> Option<(usize, Vec<&[u8]>)> {
    let eol = ws::find(buf, b"\r\n")?;
    if buf.first() == Some(&b':') || buf.first() == Some(&b'+') {
        return Some((eol + 2, vec![&buf[1..eol]]));
    }
    if buf.first() != Some(&b'*') {
        return Some((eol + 2, Vec::new()));
    }
    let n: usize = std::str::from_utf8(&buf[1..eol]).ok()?.parse().ok()?;
    let mut at = eol + 2;
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        let rest = &buf[at..];
        let eol = ws::find(rest, b"\r\n")?;
        match rest.first() {
            Some(b'$') => {
                let len: usize = std::str::from_utf8(&rest[1..eol]).ok()?.parse().ok()?;
                let start = at + eol + 2;
                if buf.len() < start + len + 2 {
                    return None;
                }
                items.push(&buf[start..start + len]);
                at = start + len + 2;
            }
            _ => {
                items.push(&rest[1..eol]);
                at += eol + 2;
            }
        }
    }
    Some((at, items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_size_and_time() {
        let p = payload(123_456, 128);
        assert_eq!(p.len(), 128);
        assert_eq!(send_time(&p), Some(123_456));
        let event = format!(
            "{{\"type\":\"event\",\"message\":{{\"payload\":{}}}}}",
            String::from_utf8(p).unwrap()
        );
        assert_eq!(send_time(event.as_bytes()), Some(123_456));
        let sorted = br#"{"type":"event","topic":"t","message":{"id":"x","payload":{"p":"xx","t":99}},"seq":1,"ts":"2026"}"#;
        assert_eq!(send_time(sorted), Some(99));
    }

    #[test]
    fn nats_items() {
        let mut got = Vec::new();
        let mut pings = 0;
        let buf = b"INFO {}\r\nMSG t 1 5\r\nhello\r\nPING\r\nMSG t 1 3\r\nab";
        let used = parse_nats(buf, &mut |m: &[u8]| got.push(m.to_vec()), &mut pings);
        assert_eq!(got, vec![b"hello".to_vec()]);
        assert_eq!(pings, 1);
        assert_eq!(&buf[used..], b"MSG t 1 3\r\nab");
    }

    #[test]
    fn redis_items() {
        let mut got = Vec::new();
        let buf = b"*3\r\n$9\r\nsubscribe\r\n$1\r\nt\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$1\r\nt\r\n$2\r\nhi\r\n*3\r\n$7\r\nmess";
        let used = parse_redis(buf, &mut |m: &[u8]| got.push(m.to_vec()));
        assert_eq!(got, vec![b"subscribe".to_vec(), b"hi".to_vec()]);
        assert!(buf[used..].starts_with(b"*3\r\n$7\r\nmess"));
    }
}
