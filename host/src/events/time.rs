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
    parse_utc_time(text).or_else(|| parse_with_chrono(text))
}

/// `text` as chrono reads it: RFC 3339, then the zone-less formats.
fn parse_with_chrono(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NAIVE_FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| Utc.from_utc_datetime(&naive))
}

/// Sysmon's `UtcTime` shape, `2024-05-01 10:00:00.123` (or with a `T`): read digit by digit,
/// as `%Y-%m-%d %H:%M:%S%.f` reads it. Every Sysmon event has one, and chrono parsing it
/// against its format strings (after RFC 3339 failed) was a sixtieth of the EVTX reading
/// threads' time. `None` for anything else, a leap second and more than nine fractional
/// digits included: [`parse`] hands those to chrono.
fn parse_utc_time(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    if bytes.len() < 19 || !matches!(bytes[10], b' ' | b'T') {
        return None;
    }
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |n, &b| b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, separator)| bytes[at] != separator) {
        return None;
    }
    let (year, month, day) = (number(&bytes[0..4])?, number(&bytes[5..7])?, number(&bytes[8..10])?);
    let (hour, minute, second) = (number(&bytes[11..13])?, number(&bytes[14..16])?, number(&bytes[17..19])?);
    let nanos = match &bytes[19..] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            number(digits)? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let time = chrono::NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some(Utc.from_utc_datetime(&date.and_time(time)))
}

/// The canonical text of a time: RFC 3339, UTC, `Z`, with as many fractional digits as
/// needed (none, 3, 6 or 9).
pub fn format(time: DateTime<Utc>) -> String {
    let mut text = String::with_capacity(30);
    write(&mut text, time);
    text
}

/// Appends [`format`]'s text of `time` to `out`. Written digit by digit: every event has
/// a time or three, and chrono's formatter (with a `String` of its own each time) was a
/// tenth of reading a Defender row. Years outside 0-9999 and leap seconds, which chrono
/// writes its own way, are left to it.
pub fn write(out: &mut String, time: DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let (date, clock) = (time.date_naive(), time.time());
    let (nanos, seconds) = (clock.nanosecond(), clock.num_seconds_from_midnight());
    // A leap second has a nanosecond of 1,000,000,000 or more.
    let year = u32::try_from(date.year()).ok().filter(|&year| year <= 9999 && nanos < 1_000_000_000);
    let Some(year) = year else {
        out.push_str(&time.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        return;
    };
    let mut text = *b"0000-00-00T00:00:00.000000000Z";
    put_digits(&mut text[0..4], year);
    put_digits(&mut text[5..7], date.month());
    put_digits(&mut text[8..10], date.day());
    put_digits(&mut text[11..13], seconds / 3600);
    put_digits(&mut text[14..16], seconds / 60 % 60);
    put_digits(&mut text[17..19], seconds % 60);
    let fraction = match nanos {
        0 => 0,
        n if n % 1_000_000 == 0 => {
            put_digits(&mut text[20..23], n / 1_000_000);
            4
        }
        n if n % 1_000 == 0 => {
            put_digits(&mut text[20..26], n / 1_000);
            7
        }
        n => {
            put_digits(&mut text[20..29], n);
            10
        }
    };
    let end = 19 + fraction;
    text[end] = b'Z';
    out.push_str(std::str::from_utf8(&text[..=end]).expect("digits and separators are ASCII"));
}

/// Writes the last `digits.len()` decimal digits of `value` into `digits`, zero-padded.
fn put_digits(digits: &mut [u8], mut value: u32) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
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
    fn times_are_written_as_chrono_writes_them() {
        // Times spread over years 0 to 9999 with every fraction length, and the edges.
        let mut draw = crate::events::drawn(0x9E37_79B9_7F4A_7C15u64);
        let mut next = move || draw(u64::MAX);
        let (first, last) = (
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
        );
        let span = (last.timestamp() - first.timestamp()) as u64;
        let mut times: Vec<DateTime<Utc>> = (0..20_000)
            .map(|i| {
                let seconds = first.timestamp() + (next() % span) as i64;
                let nanos = match i % 4 {
                    0 => 0,
                    1 => (next() % 1000) as u32 * 1_000_000,
                    2 => (next() % 1_000_000) as u32 * 1_000,
                    _ => (next() % 1_000_000_000) as u32,
                };
                Utc.timestamp_opt(seconds, nanos).unwrap()
            })
            .collect();
        times.extend([
            first,
            last,
            Utc.timestamp_opt(0, 1).unwrap(),
            Utc.timestamp_opt(0, 999_999_999).unwrap(),
            // Outside 0-9999, and a leap second: chrono's own text.
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 12, 31, 23, 59, 59).unwrap(),
            Utc.timestamp_opt(1_483_228_799, 1_500_000_000).unwrap(),
        ]);
        for time in times {
            assert_eq!(format(time), time.to_rfc3339_opts(SecondsFormat::AutoSi, true), "{time:?}");
        }
    }

    #[test]
    fn sysmons_time_shape_is_read_as_chrono_reads_it() {
        // Drawn times in Sysmon's shape, each also damaged one byte at a time, cut, lengthened
        // and with every fraction length from none to twelve digits.
        let mut next = crate::events::drawn(0x2545_F491_4F6C_DD1Du64);
        let mut texts: Vec<String> = Vec::new();
        for _ in 0..3_000 {
            let (year, month, day) = (next(10_000), next(14), next(33));
            let (hour, minute, second) = (next(25), next(61), next(62));
            let separator = if next(2) == 0 { ' ' } else { 'T' };
            let whole = format!("{year:04}-{month:02}-{day:02}{separator}{hour:02}:{minute:02}:{second:02}");
            let digits: String = (0..next(13)).map(|_| char::from(b'0' + next(10) as u8)).collect();
            let text =
                if digits.is_empty() && next(2) == 0 { whole.clone() } else { format!("{whole}.{digits}") };
            let bytes = text.as_bytes();
            let at = next(bytes.len() as u64) as usize;
            for byte in [b'-', b':', b'.', b' ', b'T', b't', b'+', b'Z', b'a', b'9'] {
                let mut damaged = bytes.to_vec();
                damaged[at] = byte;
                texts.push(String::from_utf8(damaged).expect("ASCII"));
            }
            texts.push(text[..at].to_owned());
            texts.extend([
                format!("{text}Z"),
                format!("{text}+02:00"),
                format!(" {text} "),
                format!("{text}0"),
            ]);
            texts.push(text);
        }
        texts.extend(
            [
                "2024-05-01 10:00:00",
                "2024-02-29 23:59:59.999999999",
                "2023-02-29 00:00:00",
                "2016-12-31 23:59:60",
            ]
            .map(String::from),
        );
        let mut read_here = 0;
        for text in &texts {
            assert_eq!(parse(text), parse_with_chrono(text.trim()), "{text:?}");
            read_here += usize::from(parse_utc_time(text.trim()).is_some());
        }
        assert!(read_here > 1_000, "{read_here} of {} read without chrono", texts.len());
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for text in ["", "yesterday", "2024-13-01T00:00:00Z", "1714557600"] {
            assert_eq!(parse(text), None, "{text}");
        }
    }
}
