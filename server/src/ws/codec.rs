//! WebSocket framing (RFC 6455), server side: a decoder for what clients
//! send and the few bytes of header in front of what the server sends.
//!
//! The server owns its framing so that an event's JSON, encoded once per
//! publish, goes to every subscriber's socket as it is: a 2–10 byte header
//! computed per write and the shared payload bytes, gathered into one
//! `writev` per batch. No per-subscriber copy, no UTF-8 re-validation.
//!
//! No extension is negotiated, so the RSV bits must be zero; client frames
//! must be masked; control frames are at most 125 bytes and not fragmented.

use bytes::{Buf, Bytes, BytesMut};

/// A whole message or control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message, validated UTF-8.
    Text(String),
    Binary,
    Ping(Bytes),
    Pong,
    /// The client's close frame (its code, if it gave one).
    Close(Option<u16>),
}

/// Why the connection must be closed, with the close code to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A message (or the frames of one so far) over the size limit: 1009.
    #[error("message over the {0}-byte limit")]
    TooBig(usize),
    /// A frame the RFC forbids: 1002.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message that is not UTF-8: 1007.
    #[error("text message is not valid UTF-8")]
    NotUtf8,
}

impl DecodeError {
    pub fn close_code(&self) -> u16 {
        match self {
            DecodeError::TooBig(_) => 1009,
            DecodeError::Protocol(_) => 1002,
            DecodeError::NotUtf8 => 1007,
        }
    }
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Turns the client's byte stream into messages. Keeps the frames of a
/// fragmented message until its last one.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// The opcode and payload so far of a fragmented message.
    partial: Option<(u8, Vec<u8>)>,
}

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Decoder {
            max_message,
            partial: None,
        }
    }

    /// The next whole message or control frame in `buf`, consuming its
    /// bytes; `Ok(None)` when `buf` does not hold a whole frame yet. After
    /// an error the connection must be closed: the stream is out of step.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DecodeError> {
        loop {
            let Some(frame) = self.next_frame(buf)? else {
                return Ok(None);
            };
            if let Some(message) = self.assemble(frame)? {
                return Ok(Some(message));
            }
        }
    }

    /// One frame, unmasked, or `None` if incomplete (nothing consumed).
    fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<RawFrame>, DecodeError> {
        let [b0, b1] = match buf.get(..2) {
            Some(&[b0, b1]) => [b0, b1],
            _ => return Ok(None),
        };
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(DecodeError::Protocol(
                "reserved bits set without an extension",
            ));
        }
        let opcode = b0 & 0x0F;
        if b1 & 0x80 == 0 {
            return Err(DecodeError::Protocol("client frames must be masked"));
        }
        let (len, header) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(b);
                    let len = u64::from_be_bytes(be);
                    if len >> 63 != 0 {
                        return Err(DecodeError::Protocol("payload length has its top bit set"));
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        let is_control = opcode & 0x8 != 0;
        if is_control {
            if !fin {
                return Err(DecodeError::Protocol("control frames cannot be fragmented"));
            }
            if len > 125 {
                return Err(DecodeError::Protocol("control frame over 125 bytes"));
            }
        }
        // Refuse an oversized message from its header, before buffering it.
        let so_far = self.partial.as_ref().map_or(0, |(_, p)| p.len());
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if !is_control && so_far.saturating_add(len) > self.max_message {
            return Err(DecodeError::TooBig(self.max_message));
        }
        let total = header + 4 + len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&buf[header..header + 4]);
        buf.advance(header + 4);
        let mut payload = buf.split_to(len);
        unmask(&mut payload, mask);
        Ok(Some(RawFrame {
            fin,
            opcode,
            payload,
        }))
    }

    fn assemble(&mut self, frame: RawFrame) -> Result<Option<Incoming>, DecodeError> {
        let RawFrame {
            fin,
            opcode,
            payload,
        } = frame;
        match opcode {
            OP_PING => Ok(Some(Incoming::Ping(payload.freeze()))),
            OP_PONG => Ok(Some(Incoming::Pong)),
            OP_CLOSE => close_of(&payload).map(|code| Some(Incoming::Close(code))),
            OP_TEXT | OP_BINARY => {
                if self.partial.is_some() {
                    return Err(DecodeError::Protocol(
                        "a new message began before the fragmented one ended",
                    ));
                }
                if fin {
                    finish(opcode, payload.to_vec()).map(Some)
                } else {
                    self.partial = Some((opcode, payload.to_vec()));
                    Ok(None)
                }
            }
            OP_CONTINUATION => {
                let Some((first, mut data)) = self.partial.take() else {
                    return Err(DecodeError::Protocol(
                        "continuation frame without a message",
                    ));
                };
                data.extend_from_slice(&payload);
                if fin {
                    finish(first, data).map(Some)
                } else {
                    self.partial = Some((first, data));
                    Ok(None)
                }
            }
            _ => Err(DecodeError::Protocol("unknown opcode")),
        }
    }
}

struct RawFrame {
    fin: bool,
    opcode: u8,
    payload: BytesMut,
}

fn finish(opcode: u8, data: Vec<u8>) -> Result<Incoming, DecodeError> {
    if opcode == OP_BINARY {
        return Ok(Incoming::Binary);
    }
    String::from_utf8(data)
        .map(Incoming::Text)
        .map_err(|_| DecodeError::NotUtf8)
}

/// A close frame's payload: empty, or a code and a UTF-8 reason.
fn close_of(payload: &[u8]) -> Result<Option<u16>, DecodeError> {
    match payload {
        [] => Ok(None),
        [_] => Err(DecodeError::Protocol("close frame with a one-byte payload")),
        [hi, lo, reason @ ..] => {
            std::str::from_utf8(reason).map_err(|_| DecodeError::NotUtf8)?;
            Ok(Some(u16::from_be_bytes([*hi, *lo])))
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        for (b, m) in chunk.iter_mut().zip(mask) {
            *b ^= m;
        }
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

/// The header of an unmasked server frame: FIN set, `opcode`, the length.
/// Returns the buffer and how many of its bytes are the header.
pub fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// Opcode of a text frame, for [`header`].
pub const TEXT: u8 = OP_TEXT;

/// A whole close frame: code and reason (cut to fit 125 bytes).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = Vec::with_capacity(4 + cut);
    let (h, n) = header(OP_CLOSE, 2 + cut);
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..cut]);
    out
}

/// A whole ping frame with no payload.
pub const PING: [u8; 2] = [0x80 | OP_PING, 0];

/// A whole close frame with no code (for a peer that may be gone already).
pub const EMPTY_CLOSE: [u8; 2] = [0x80 | OP_CLOSE, 0];

/// A whole pong frame echoing `payload` (at most 125 bytes, as pings are).
pub fn pong_frame(payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(125)];
    let (h, n) = header(OP_PONG, payload.len());
    let mut out = Vec::with_capacity(n + payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let (h, n) = header(opcode, payload.len());
        let mut out = h[..n].to_vec();
        if !fin {
            out[0] &= 0x7F;
        }
        out[1] |= 0x80;
        out.extend_from_slice(&mask);
        out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        out
    }

    fn decode_all(bytes: &[u8], max: usize) -> Vec<Result<Incoming, DecodeError>> {
        let mut d = Decoder::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Byte by byte: every split point of the stream must work.
        for b in bytes {
            buf.extend_from_slice(&[*b]);
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(m)) => out.push(Ok(m)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn messages_of_every_length_encoding_and_fragments() {
        let long = "x".repeat(70_000);
        let mut stream = client(true, OP_TEXT, b"{\"type\":\"ping\"}");
        stream.extend(client(true, OP_TEXT, "é".repeat(100).as_bytes()));
        stream.extend(client(true, OP_TEXT, long.as_bytes()));
        stream.extend(client(false, OP_TEXT, b"hel"));
        stream.extend(client(true, OP_PING, b"p"));
        stream.extend(client(false, OP_CONTINUATION, b"lo "));
        stream.extend(client(true, OP_CONTINUATION, b"world"));
        stream.extend(client(true, OP_BINARY, &[0, 1, 2]));
        stream.extend(client(true, OP_PONG, b""));
        stream.extend(client(true, OP_CLOSE, &[0x03, 0xE8, b'o', b'k']));
        let got: Vec<Incoming> = decode_all(&stream, 1 << 20)
            .into_iter()
            .map(|r| r.expect("valid"))
            .collect();
        assert_eq!(
            got,
            vec![
                Incoming::Text("{\"type\":\"ping\"}".into()),
                Incoming::Text("é".repeat(100)),
                Incoming::Text(long),
                Incoming::Ping(Bytes::from_static(b"p")),
                Incoming::Text("hello world".into()),
                Incoming::Binary,
                Incoming::Pong,
                Incoming::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn protocol_violations_are_refused() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (
                {
                    let mut f = client(true, OP_TEXT, b"a");
                    f[1] &= 0x7F;
                    f.remove(2);
                    f.truncate(3);
                    f
                },
                1002,
            ),
            (
                {
                    let mut f = client(true, OP_TEXT, b"a");
                    f[0] |= 0x40;
                    f
                },
                1002,
            ),
            (client(true, 0x3, b"a"), 1002),
            (client(false, OP_PING, b"a"), 1002),
            (client(true, OP_PING, &[0; 126]), 1002),
            (client(true, OP_CONTINUATION, b"a"), 1002),
            (
                {
                    let mut f = client(false, OP_TEXT, b"a");
                    f.extend(client(true, OP_TEXT, b"b"));
                    f
                },
                1002,
            ),
            (client(true, OP_CLOSE, &[3]), 1002),
            (client(true, OP_TEXT, &[0xff, 0xfe]), 1007),
            (client(true, OP_TEXT, &[b'x'; 101]), 1009),
            (
                {
                    let mut f = client(false, OP_TEXT, &[b'x'; 60]);
                    f.extend(client(true, OP_CONTINUATION, &[b'x'; 60]));
                    f
                },
                1009,
            ),
        ];
        for (bytes, code) in cases {
            let got = decode_all(&bytes, 100);
            match got.last() {
                Some(Err(e)) => assert_eq!(e.close_code(), code, "{e} for {bytes:?}"),
                other => panic!("expected close {code} for {bytes:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header() {
        let mut d = Decoder::new(1000);
        // Only the header of a 1 GiB frame: refused without waiting for it.
        let mut buf = BytesMut::from(&[0x81u8, 0xFF, 0, 0, 0, 0, 0x40, 0, 0, 0][..]);
        assert_eq!(d.decode(&mut buf), Err(DecodeError::TooBig(1000)));
        let mut buf = BytesMut::from(&[0x81u8, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0][..]);
        assert!(matches!(
            Decoder::new(1000).decode(&mut buf),
            Err(DecodeError::Protocol(_))
        ));
    }

    #[test]
    fn server_headers_and_control_frames() {
        assert_eq!(header(TEXT, 5), ([0x81, 5, 0, 0, 0, 0, 0, 0, 0, 0], 2));
        assert_eq!(&header(TEXT, 300).0[..4], &[0x81, 126, 1, 44]);
        assert_eq!(header(TEXT, 70_000).1, 10);
        assert_eq!(
            close_frame(1001, "bye"),
            vec![0x88, 5, 0x03, 0xE9, b'b', b'y', b'e']
        );
        assert_eq!(close_frame(1000, &"é".repeat(100)).len(), 2 + 2 + 122);
        assert_eq!(pong_frame(b"x"), vec![0x8A, 1, b'x']);
    }
}
