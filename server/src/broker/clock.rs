//! Timestamps as the contract writes them: RFC 3339, UTC, milliseconds.

use chrono::{DateTime, SecondsFormat, Utc};

/// `2026-11-26T21:00:00.123Z` for now.
pub fn now_rfc3339() -> String {
    rfc3339(Utc::now())
}

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
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
    }
}
