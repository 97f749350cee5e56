//! WebSocket client frames byte by byte (RFC 6455 §5.2), for the tests that
//! write raw sockets (fragments, reserved bits, a request glued to the
//! upgrade) and for the load generator, which encodes its requests once.
//! The one encoder of masked frames in the tree, and [`server_frame`], a
//! reader of the server's (unmasked) frames for tests without a WebSocket
//! library.

/// Text frame opcode.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame opcode.
pub const OP_BINARY: u8 = 0x2;
/// Close frame opcode.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub const OP_PONG: u8 = 0xA;

/// The mask of every frame encoded here. A fixed one is enough: masking
/// protects proxies from crafted bytes, it is not secrecy.
pub const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// The `Sec-WebSocket-Key` of [`upgrade_request`] (RFC 6455's sample)...
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// ...and the `Sec-WebSocket-Accept` a server must answer it with.
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Appends one masked frame to `out` whose first byte (FIN, RSV1-3 and the
/// opcode) is `first_byte` exactly, so a test can send a fragment
/// (`0x01`), a reserved bit (`0xC1`) or an unknown opcode.
pub fn encode_raw(out: &mut Vec<u8>, first_byte: u8, payload: &[u8]) {
    out.push(first_byte);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
}

/// Appends one final (FIN) masked frame of `opcode` to `out`.
pub fn encode_client(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    encode_raw(out, 0x80 | opcode, payload);
}

/// One masked frame with the given first byte, as its own buffer.
pub fn masked(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    encode_raw(&mut out, first_byte, payload);
    out
}

/// A final masked text frame.
pub fn text_frame(text: &str) -> Vec<u8> {
    masked(0x80 | OP_TEXT, text.as_bytes())
}

/// A masked close frame carrying `code`.
pub fn close_frame(code: u16) -> Vec<u8> {
    masked(0x80 | OP_CLOSE, &code.to_be_bytes())
}

/// The HTTP/1.1 upgrade request to `path` on `host`, with [`SAMPLE_KEY`].
pub fn upgrade_request(host: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// The first whole unmasked frame at the start of `buf`: its first byte
/// (FIN and opcode), its payload, and the bytes it took. `None` until the
/// frame is complete; masked frames (a client's) are not read.
pub fn server_frame(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let (&first, rest) = buf.split_first()?;
    let (&second, rest) = rest.split_first()?;
    if second & 0x80 != 0 {
        return None;
    }
    let (len, header): (usize, usize) = match second & 0x7F {
        126 => (
            usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = rest.get(..8)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(bytes)).ok()?, 10)
        }
        small => (usize::from(small), 2),
    };
    let payload = buf.get(header..header.checked_add(len)?)?;
    Some((first, payload, header + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmasked(frame: &[u8], header: usize) -> Vec<u8> {
        let mask = &frame[header - 4..header];
        frame[header..]
            .iter()
            .zip(mask.iter().cycle())
            .map(|(b, m)| b ^ m)
            .collect()
    }

    #[test]
    fn lengths_take_the_three_encodings_of_rfc_6455() {
        let small = text_frame("hi");
        assert_eq!(&small[..2], &[0x81, 0x80 | 2]);
        assert_eq!(unmasked(&small, 6), b"hi");

        let medium = vec![b'a'; 126];
        let f = masked(0x82, &medium);
        assert_eq!(&f[..4], &[0x82, 0x80 | 126, 0, 126]);
        assert_eq!(unmasked(&f, 8), medium);

        let large = vec![b'b'; 0x1_0000];
        let f = masked(0x01, &large);
        assert_eq!(f[0], 0x01);
        assert_eq!(f[1], 0x80 | 127);
        assert_eq!(&f[2..10], &0x1_0000u64.to_be_bytes());
        assert_eq!(unmasked(&f, 14), large);
    }

    #[test]
    fn server_frames_are_read_whole_or_not_at_all() {
        let mut frames = vec![0x81, 2, b'h', b'i', 0x89, 0];
        frames.extend_from_slice(&[0x81, 126, 0x01, 0x00]);
        frames.extend(std::iter::repeat_n(b'x', 256));
        let (first, payload, used) = server_frame(&frames).unwrap();
        assert_eq!((first, payload, used), (0x81, &b"hi"[..], 4));
        let (first, payload, used) = server_frame(&frames[4..]).unwrap();
        assert_eq!((first, payload.len(), used), (0x89, 0, 2));
        let (_, payload, used) = server_frame(&frames[6..]).unwrap();
        assert_eq!((payload.len(), used), (256, 260));
        assert!(server_frame(&frames[6..100]).is_none(), "incomplete");
        assert!(server_frame(&text_frame("masked")).is_none());
    }

    #[test]
    fn a_close_frame_carries_its_code_big_endian() {
        let f = close_frame(1000);
        assert_eq!(&f[..2], &[0x88, 0x82]);
        assert_eq!(unmasked(&f, 6), 1000u16.to_be_bytes());
    }

    #[test]
    fn the_sample_accept_is_the_rfc_answer_to_the_sample_key() {
        // RFC 6455 §1.3 gives this pair; the request carries the key.
        assert!(upgrade_request("h", "/ws").contains(SAMPLE_KEY));
        assert_eq!(SAMPLE_ACCEPT.len(), 28);
    }
}
