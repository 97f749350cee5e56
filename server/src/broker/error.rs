//! The broker's error type: a contract code plus a sentence for people.
//!
//! The REST and WebSocket adapters turn it into their own shapes; the code
//! never changes on the way, so both speak the same language.

use protocol::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct BrokerError {
    pub code: ErrorCode,
    pub message: String,
}

impl BrokerError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn topic_not_found(topic: &str) -> Self {
        Self::new(
            ErrorCode::TopicNotFound,
            format!("topic {topic:?} does not exist"),
        )
    }

    pub fn topic_exists(topic: &str) -> Self {
        Self::new(
            ErrorCode::TopicExists,
            format!("topic {topic:?} already exists"),
        )
    }
}

/// Checks a topic name against the contract's rules.
pub fn check_topic_name(name: &str) -> Result<(), BrokerError> {
    match protocol::topic_name_problem(name) {
        None => Ok(()),
        Some(problem) => Err(BrokerError::bad_request(problem)),
    }
}
