//! Publishing with retries that cannot publish twice.
//!
//! Every publish carries an id (the caller's, or a fresh UUID v4) and every
//! retry sends the same id. The server answers a repeat of an id it has
//! seen on the topic within `dedup_window` like the original, with
//! `duplicate: true`, and publishes nothing (PROTOCOL.md, "Idempotent
//! publish"). So a publish whose answer was lost (the server died after
//! storing it, the connection broke) can be retried safely: at most one
//! message per id reaches subscribers.
//!
//! Only failures that a retry can fix are retried: transport failures,
//! `UNAVAILABLE` (the cluster's backplane is away) and `RATE_LIMITED`.
//! A refusal about the request itself (`BAD_REQUEST`, `UNAUTHORIZED`,
//! `FORBIDDEN`, `TOPIC_NOT_FOUND`, `PAYLOAD_TOO_LARGE`, ...) is returned at
//! once.

use crate::backoff::{Backoff, RetryPolicy};
use protocol::client::{Client as Rest, Error};
use protocol::{ErrorCode, PublishMessage};
use serde_json::Value;
use tokio::time::Instant;

/// A published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The message id (the one given, or the one the library assigned).
    pub id: String,
    /// The message's seq in its topic.
    pub seq: u64,
    /// `true` when the server had this id already (an earlier attempt was
    /// stored after all, or the caller published it before): nothing was
    /// published again and `seq` is the original's.
    pub duplicate: bool,
    /// How many requests it took (1 when the first was answered).
    pub attempts: u32,
}

/// Whether a failed attempt may be repeated under the same id.
pub(crate) fn worth_retrying(e: &Error) -> bool {
    match e {
        Error::Transport(_) => true,
        Error::Refused {
            code: Some(code), ..
        } => matches!(code, ErrorCode::Unavailable | ErrorCode::RateLimited),
        // A proxy's answer without the contract's body.
        Error::Refused { status, .. } => matches!(status, 429 | 502 | 503 | 504),
        Error::Body(_) => false,
    }
}

pub(crate) async fn publish(
    rest: &Rest,
    policy: &RetryPolicy,
    topic: &str,
    payload: Value,
    id: Option<String>,
) -> Result<Receipt, Error> {
    let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let message = PublishMessage {
        id: Some(id),
        payload,
    };
    let deadline = Instant::now() + policy.publish_deadline;
    let mut backoff = Backoff::new(policy);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let answer = tokio::time::timeout(policy.attempt_timeout, rest.publish(topic, &message))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Transport(format!(
                    "no answer within {:?}",
                    policy.attempt_timeout
                )))
            });
        match answer {
            Ok(p) => {
                return Ok(Receipt {
                    id: p.id,
                    seq: p.seq,
                    duplicate: p.duplicate,
                    attempts,
                })
            }
            Err(e) if worth_retrying(&e) => {
                let delay = backoff.next_delay();
                if Instant::now() + delay > deadline {
                    return Err(e);
                }
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: Option<ErrorCode>) -> Error {
        Error::Refused {
            status,
            code,
            message: String::new(),
        }
    }

    #[test]
    fn only_what_a_retry_can_fix_is_retried() {
        assert!(worth_retrying(&Error::Transport("reset".into())));
        assert!(worth_retrying(&refused(503, Some(ErrorCode::Unavailable))));
        assert!(worth_retrying(&refused(429, Some(ErrorCode::RateLimited))));
        assert!(worth_retrying(&refused(502, None)));
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::TopicNotFound,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Internal,
        ] {
            assert!(
                !worth_retrying(&refused(code.http_status(), Some(code))),
                "{code}"
            );
        }
        assert!(!worth_retrying(&Error::Body("odd".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_server_is_retried_until_the_deadline() {
        // Port 9 (discard) on loopback: connection refused at once.
        let rest = Rest::new("http://127.0.0.1:9");
        let policy = RetryPolicy {
            publish_deadline: std::time::Duration::from_secs(3),
            ..RetryPolicy::default()
        };
        let e = publish(&rest, &policy, "t", Value::Null, None)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Transport(_)), "{e}");
    }
}
