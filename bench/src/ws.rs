//! Just enough WebSocket for a load generator: the client handshake and
//! masked client frames (both from the protocol crate's `testing`), the
//! floor server's unmasked frames, and a parser of the server's frames that
//! hands out payload slices without copying.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends the upgrade request and waits for `101`. The accept key is not
/// checked: the peers are our own loopback servers.
pub async fn handshake(stream: &mut TcpStream, host: &str, path: &str) -> std::io::Result<Vec<u8>> {
    let request = protocol::testing::upgrade_request(host, path);
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other(
                "closed during the WebSocket handshake",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(std::io::Error::other(format!(
                    "upgrade refused: {}",
                    String::from_utf8_lossy(&buf[..end])
                )));
            }
            // Bytes after the headers already belong to the frame stream.
            return Ok(buf.split_off(end + 4));
        }
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub use protocol::testing::encode_client;

/// Appends one unmasked server frame to `out` (for the floor server).
pub fn encode_server(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len < 65536 {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// One parsed frame: opcode and the payload's range in the buffer.
pub struct Frame {
    pub opcode: u8,
    pub start: usize,
    pub end: usize,
}

/// Parses the frame at the start of `buf`, if complete. Handles masked
/// frames (from clients) only as far as the floor server needs: it reads
/// them and unmasks in place.
pub fn parse(buf: &mut [u8]) -> Option<Frame> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let mut len = (buf[1] & 0x7f) as usize;
    let mut at = 2;
    if len == 126 {
        if buf.len() < 4 {
            return None;
        }
        len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        at = 4;
    } else if len == 127 {
        if buf.len() < 10 {
            return None;
        }
        len = u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize;
        at = 10;
    }
    let mask_at = at;
    if masked {
        at += 4;
    }
    if buf.len() < at + len {
        return None;
    }
    if masked {
        let mask = [
            buf[mask_at],
            buf[mask_at + 1],
            buf[mask_at + 2],
            buf[mask_at + 3],
        ];
        for (i, b) in buf[at..at + len].iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Some(Frame {
        opcode,
        start: at,
        end: at + len,
    })
}
