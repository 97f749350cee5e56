//! Timestamps as the contract writes them: RFC 3339, UTC, milliseconds.

use chrono::{DateTime, SecondsFormat, Utc};

/// `2026-11-26T21:00:00.123Z` for now.
pub fn now_rfc3339() -> String {
    rfc3339(Utc::now())
}

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Now, as unix milliseconds: 8 bytes to keep where a formatted timestamp
/// would be a 24-byte string and an allocation (a connection's or a
/// subscription's start, kept for as long as it lives).
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

/// [`now_millis`] as the contract writes timestamps.
pub fn rfc3339_of_millis(millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis).map_or_else(String::new, rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_with_milliseconds_and_z() {
        let at = Utc.timestamp_millis_opt(1_795_813_200_123).unwrap();
        assert_eq!(rfc3339(at), "2026-11-27T21:00:00.123Z");
        assert_eq!(now_rfc3339().len(), "2026-11-26T21:00:00.123Z".len());
        assert_eq!(
            rfc3339_of_millis(1_795_813_200_123),
            "2026-11-27T21:00:00.123Z"
        );
    }
}
