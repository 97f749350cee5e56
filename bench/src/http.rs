//! Just enough HTTP/1.1 for the soak's REST calls (`/api/stats`,
//! `/api/topics`, `/metrics`): one request per connection, the answer read
//! to the end, chunked bodies decoded. Every failure is a value: the soak
//! counts it, it never panics on what the server sent.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why a request failed, as the soak's error table names it.
#[derive(Debug)]
pub enum HttpError {
    /// Connecting, writing or reading failed.
    Io(std::io::Error),
    /// The answer is not HTTP/1.x, or its body cannot be decoded.
    Malformed(String),
    /// An answer with an unexpected status.
    Status(u16, String),
    /// The body is not the JSON the contract describes.
    Body(String),
}

impl HttpError {
    /// A short key for the error table: `io`, `malformed`, `http 503`, `body`.
    pub fn key(&self) -> String {
        match self {
            HttpError::Io(_) => "io".into(),
            HttpError::Malformed(_) => "malformed".into(),
            HttpError::Status(code, _) => format!("http {code}"),
            HttpError::Body(_) => "body".into(),
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Io(e) => write!(f, "{e}"),
            HttpError::Malformed(m) | HttpError::Body(m) => write!(f, "{m}"),
            HttpError::Status(code, body) => write!(f, "status {code}: {body}"),
        }
    }
}

impl From<std::io::Error> for HttpError {
    fn from(e: std::io::Error) -> Self {
        HttpError::Io(e)
    }
}

/// Sends one request and returns the status and body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, Vec<u8>), HttpError> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await?;
    parse_response(&answer)
}

/// `GET path`, expecting 200 and a JSON body.
pub async fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value, HttpError> {
    let (status, body) = request(addr, "GET", path, None).await?;
    if status != 200 {
        return Err(HttpError::Status(
            status,
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| HttpError::Body(format!("{path}: {e}")))
}

/// `GET path`, expecting 200 and a text body.
pub async fn get_text(addr: SocketAddr, path: &str) -> Result<String, HttpError> {
    let (status, body) = request(addr, "GET", path, None).await?;
    if status != 200 {
        return Err(HttpError::Status(
            status,
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    String::from_utf8(body).map_err(|e| HttpError::Body(format!("{path}: {e}")))
}

/// Status line, headers, then the body (de-chunked when chunked).
fn parse_response(answer: &[u8]) -> Result<(u16, Vec<u8>), HttpError> {
    let end = crate::ws::find(answer, b"\r\n\r\n")
        .ok_or_else(|| HttpError::Malformed("no end of headers".into()))?;
    let head = std::str::from_utf8(&answer[..end])
        .map_err(|_| HttpError::Malformed("headers are not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    if !status_line.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!(
            "not an HTTP answer: {status_line:?}"
        )));
    }
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::Malformed(format!("no status in {status_line:?}")))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &answer[end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    loop {
        let eol = crate::ws::find(body, b"\r\n")
            .ok_or_else(|| HttpError::Malformed("truncated chunk size".into()))?;
        let size = std::str::from_utf8(&body[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .ok_or_else(|| HttpError::Malformed("bad chunk size".into()))?;
        if size == 0 {
            return Ok(out);
        }
        let start = eol + 2;
        let chunk = body
            .get(start..start + size)
            .ok_or_else(|| HttpError::Malformed("truncated chunk".into()))?;
        out.extend_from_slice(chunk);
        body = body.get(start + size + 2..).unwrap_or(&[]);
    }
}

/// The value of an unlabelled sample in the Prometheus text format.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (201, b"abcde".to_vec()));
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
        let truncated = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nabc";
        assert!(parse_response(truncated).is_err());
    }

    #[test]
    fn metrics_by_name() {
        let text = "# HELP pubsub_queued_events x\npubsub_queued_events 0\npubsub_connections 3\n\
                    pubsub_topic_messages_total{topic=\"a\"} 5\n";
        assert_eq!(metric(text, "pubsub_queued_events"), Some(0.0));
        assert_eq!(metric(text, "pubsub_connections"), Some(3.0));
        assert_eq!(metric(text, "pubsub_topic_messages_total"), None);
    }
}
