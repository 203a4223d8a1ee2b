//! Times on the command line: RFC 3339 in UTC for people, ms since the Unix epoch on the ledger.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::CliError;

/// The current time, ms since the Unix epoch.
pub fn now_ms() -> Result<u64, CliError> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| CliError::Invalid("the system clock is before 1970".into()))?;
    u64::try_from(since.as_millis())
        .map_err(|_| CliError::Invalid("the system clock is out of range".into()))
}

/// RFC 3339 UTC form of a time in ms since the Unix epoch (milliseconds shown when not zero).
pub fn utc(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    if ms.is_multiple_of(1000) {
        humantime::format_rfc3339_seconds(t).to_string()
    } else {
        humantime::format_rfc3339_millis(t).to_string()
    }
}

/// `1767225600000 ms (2026-01-01T00:00:00Z)`.
pub fn time_text(ms: u64) -> String {
    format!("{ms} ms ({})", utc(ms))
}

/// Parses a time given as RFC 3339 (`2027-01-31T00:00:00Z`), a date (`2027-01-31`, midnight
/// UTC) or ms since the Unix epoch.
pub fn parse_time(s: &str) -> Result<u64, CliError> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    let t = humantime::parse_rfc3339(&full).map_err(|e| {
        CliError::Invalid(format!(
            "time {s:?}: {e} (use 2027-01-31, 2027-01-31T08:00:00Z or ms since 1970)"
        ))
    })?;
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| CliError::Invalid(format!("time {s:?} is before 1970")))?
        .as_millis();
    u64::try_from(ms).map_err(|_| CliError::Invalid(format!("time {s:?} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_767_225_600_000), "2026-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(utc(4_102_444_800_000), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn parses_dates_times_and_ms() {
        assert_eq!(parse_time("2026-01-01").unwrap(), 1_767_225_600_000);
        assert_eq!(
            parse_time("2026-01-01T00:00:01Z").unwrap(),
            1_767_225_601_000
        );
        assert_eq!(parse_time("42").unwrap(), 42);
        assert!(
            parse_time("yesterday")
                .unwrap_err()
                .to_string()
                .contains("use 2027-01-31")
        );
    }
}
