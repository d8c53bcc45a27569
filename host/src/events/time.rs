//! Event timestamps: parsed from the shapes the sources write, normalized to RFC 3339 UTC.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};

/// Formats without a zone that the exports use; their times are UTC.
const NAIVE_FORMATS: &[&str] = &[
    // Log Analytics / Sentinel portal CSV: `5/1/2024, 10:00:00.123 AM`.
    "%m/%d/%Y, %I:%M:%S%.f %p",
    "%m/%d/%Y %I:%M:%S%.f %p",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
];

/// Parses a timestamp: RFC 3339 with any zone, or one of the zone-less export formats
/// read as UTC.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NAIVE_FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| Utc.from_utc_datetime(&naive))
}

/// The canonical text of a time: RFC 3339, UTC, `Z`, with as many fractional digits as
/// needed (none, 3, 6 or 9).
pub fn format(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The canonical text of a time given in milliseconds since the epoch.
pub fn format_ms(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).single().map_or_else(|| ms.to_string(), format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_export_shapes() {
        let cases = [
            ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00Z"),
            ("2024-05-01T10:00:00.123Z", "2024-05-01T10:00:00.123Z"),
            ("2024-05-01T10:00:00.1234567Z", "2024-05-01T10:00:00.123456700Z"),
            ("2024-05-01T12:00:00+02:00", "2024-05-01T10:00:00Z"),
            ("2024-05-01 10:00:00.5", "2024-05-01T10:00:00.500Z"),
            ("5/1/2024, 10:00:00.123 PM", "2024-05-01T22:00:00.123Z"),
            ("5/1/2024 9:05:00 AM", "2024-05-01T09:05:00Z"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).map(format).as_deref(), Some(expected), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for text in ["", "yesterday", "2024-13-01T00:00:00Z", "1714557600"] {
            assert_eq!(parse(text), None, "{text}");
        }
    }
}
