//! Tumbling event-time windows.

use std::str::FromStr;

/// How matches are grouped in time before a rule summarizes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Tumbling windows of this many milliseconds, aligned to multiples of it since the
    /// Unix epoch (so `1h` windows start on the hour, UTC).
    Every(i64),
    /// One window over the whole input.
    All,
}

impl WindowSpec {
    /// The window `[start, end)` in milliseconds that holds `time_ms`. For
    /// [`WindowSpec::All`] every event is in the window `[i64::MIN, i64::MAX)`; the
    /// evaluator reports it with the input's first and last times.
    pub fn window_of(self, time_ms: i64) -> (i64, i64) {
        match self {
            WindowSpec::Every(length) => {
                let start = time_ms.div_euclid(length) * length;
                (start, start.saturating_add(length))
            }
            WindowSpec::All => (i64::MIN, i64::MAX),
        }
    }
}

impl FromStr for WindowSpec {
    type Err = String;

    /// `all`, or a positive whole number followed by `ms`, `s`, `m`, `h` or `d`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "all" {
            return Ok(WindowSpec::All);
        }
        match milliseconds(text) {
            Ok(length) if length > 0 => Ok(WindowSpec::Every(length)),
            Ok(_) => Err(format!("{text:?}: a window is longer than zero")),
            Err(DurationError::Form) => {
                Err(format!("{text:?}: expected `all` or a duration such as 30m, 1h, 1d"))
            }
            Err(error) => Err(error.describe(text)),
        }
    }
}

/// A duration of the command line's other options (`--allowed-lateness`, `--poll-interval`):
/// a whole number followed by `ms`, `s`, `m`, `h` or `d`; zero too where `zero` is allowed
/// (no lateness, no clock skew), not where it would make a loop spin (an interval).
pub fn parse_duration(text: &str, zero: bool) -> Result<std::time::Duration, String> {
    match milliseconds(text) {
        Ok(0) if !zero => Err(format!("{text:?}: a duration longer than zero")),
        Ok(ms) => Ok(std::time::Duration::from_millis(ms as u64)),
        Err(error) => Err(error.describe(text)),
    }
}

/// Why a duration's text was refused.
enum DurationError {
    /// Not a number and a unit.
    Form,
    /// No whole number before the unit.
    Number(String),
    /// Past `i64` milliseconds.
    TooLong,
}

impl DurationError {
    fn describe(&self, text: &str) -> String {
        match self {
            DurationError::Form => format!("{text:?}: expected a duration such as 30s, 5m, 1h"),
            DurationError::Number(unit) => format!("{text:?}: expected a whole number before {unit:?}"),
            DurationError::TooLong => format!("{text:?}: longer than 290 million years"),
        }
    }
}

/// The milliseconds of a whole number followed by a unit.
fn milliseconds(text: &str) -> Result<i64, DurationError> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_ms: i64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(DurationError::Form),
    };
    let number: i64 = number.parse().map_err(|_| DurationError::Number(unit.to_owned()))?;
    number.checked_mul(unit_ms).ok_or(DurationError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!("1h".parse(), Ok(WindowSpec::Every(3_600_000)));
        assert_eq!("30m".parse(), Ok(WindowSpec::Every(1_800_000)));
        assert_eq!("1d".parse(), Ok(WindowSpec::Every(86_400_000)));
        assert_eq!("250ms".parse(), Ok(WindowSpec::Every(250)));
        assert_eq!("all".parse(), Ok(WindowSpec::All));
        for bad in ["", "h", "0h", "1w", "-1h", "1.5h", "99999999999999999d"] {
            assert!(bad.parse::<WindowSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_of_other_options_take_zero_only_where_it_means_something() {
        use std::time::Duration;
        assert_eq!(parse_duration("0s", true), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90s", false), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms", true), Ok(Duration::from_millis(250)));
        let zero = parse_duration("0s", false).unwrap_err();
        assert!(zero.contains("longer than zero"), "{zero}");
        for bad in ["all", "", "s", "1w", "-1s", "99999999999999999d"] {
            let error = parse_duration(bad, true).unwrap_err();
            assert!(!error.contains("window"), "{bad}: {error}");
        }
    }

    #[test]
    fn windows_align_to_the_epoch() {
        let hour = WindowSpec::Every(3_600_000);
        assert_eq!(hour.window_of(0), (0, 3_600_000));
        assert_eq!(hour.window_of(3_599_999), (0, 3_600_000));
        assert_eq!(hour.window_of(3_600_000), (3_600_000, 7_200_000));
        assert_eq!(hour.window_of(-1), (-3_600_000, 0), "before 1970 too");
    }
}
