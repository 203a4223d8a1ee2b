//! Times on the command line: RFC 3339 (any offset) in, RFC 3339 in UTC out for people, ms since
//! the Unix epoch on the ledger.

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

/// Parses a time given as RFC 3339 with `Z` or an offset (`2027-01-31T00:00:00Z`,
/// `2027-01-31T01:00:00+01:00`), a date (`2027-01-31`, midnight UTC) or ms since the Unix epoch.
pub fn parse_time(s: &str) -> Result<u64, CliError> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let hint = "use 2027-01-31, 2027-01-31T08:00:00Z, 2027-01-31T09:00:00+01:00 or ms since 1970";
    let (utc_form, offset_ms) =
        split_offset(s).map_err(|e| CliError::Invalid(format!("time {s:?}: {e} ({hint})")))?;
    let full = if utc_form.len() == 10 {
        format!("{utc_form}T00:00:00Z")
    } else {
        utc_form
    };
    let t = humantime::parse_rfc3339(&full)
        .map_err(|e| CliError::Invalid(format!("time {s:?}: {e} ({hint})")))?;
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| CliError::Invalid(format!("time {s:?} is before 1970")))?
        .as_millis();
    let ms = i128::try_from(ms)
        .map_err(|_| CliError::Invalid(format!("time {s:?} is out of range")))?
        - i128::from(offset_ms);
    if ms < 0 {
        return Err(CliError::Invalid(format!("time {s:?} is before 1970")));
    }
    u64::try_from(ms).map_err(|_| CliError::Invalid(format!("time {s:?} is out of range")))
}

/// Splits a numeric offset (`+01:00`, `-05:30`) off an RFC 3339 time: returns the time with
/// `Z` in its place and the offset in ms (local time = UTC + offset). A time without one is
/// returned as it is, with offset 0.
fn split_offset(s: &str) -> Result<(String, i64), String> {
    let b = s.as_bytes();
    let n = b.len();
    // `YYYY-MM-DDTHH:MM...±HH:MM`: the sign is 6 from the end, after the `T`.
    if n < 17 || !matches!(b[n - 6], b'+' | b'-') || !s[..n - 6].contains(['T', 't', ' ']) {
        return Ok((s.to_string(), 0));
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        s.get(r)
            .filter(|d| d.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
    };
    let (Some(h), Some(m), b':') = (digits(n - 5..n - 3), digits(n - 2..n), b[n - 3]) else {
        return Err(format!("offset {:?} is not ±HH:MM", &s[n - 6..]));
    };
    if h > 23 || m > 59 {
        return Err(format!("offset {:?} is out of range", &s[n - 6..]));
    }
    let sign = if b[n - 6] == b'-' { -1 } else { 1 };
    Ok((format!("{}Z", &s[..n - 6]), sign * (h * 60 + m) * 60_000))
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
        assert_eq!(
            parse_time("2026-12-31T00:00:00+01:00").unwrap(),
            parse_time("2026-12-30T23:00:00Z").unwrap()
        );
        assert_eq!(
            parse_time("2026-01-01T00:00:00-05:30").unwrap(),
            parse_time("2026-01-01T05:30:00Z").unwrap()
        );
        assert_eq!(
            parse_time("2026-01-01T00:00:00.250+00:00").unwrap(),
            1_767_225_600_250
        );
        assert!(
            parse_time("2026-01-01T00:00:00+1:000")
                .unwrap_err()
                .to_string()
                .contains("not ±HH:MM")
        );
        assert!(parse_time("1970-01-01T00:30:00+01:00").is_err());
        assert!(
            parse_time("yesterday")
                .unwrap_err()
                .to_string()
                .contains("use 2027-01-31")
        );
    }
}
