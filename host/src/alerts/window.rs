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
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit_ms: i64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!("{text:?}: expected `all` or a duration such as 30m, 1h, 1d"));
            }
        };
        let number: i64 =
            number.parse().map_err(|_| format!("{text:?}: expected a whole number before {unit:?}"))?;
        match number.checked_mul(unit_ms) {
            Some(length) if length > 0 => Ok(WindowSpec::Every(length)),
            _ => Err(format!("{text:?}: a window is longer than zero and shorter than 290 million years")),
        }
    }
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
    fn windows_align_to_the_epoch() {
        let hour = WindowSpec::Every(3_600_000);
        assert_eq!(hour.window_of(0), (0, 3_600_000));
        assert_eq!(hour.window_of(3_599_999), (0, 3_600_000));
        assert_eq!(hour.window_of(3_600_000), (3_600_000, 7_200_000));
        assert_eq!(hour.window_of(-1), (-3_600_000, 0), "before 1970 too");
    }
}
