//! A rule for tests: every event matches, and each window becomes one alert counting them.
//! With `--matches` it prints every normalized event, which is how the tests compare the
//! normalization of each source with golden files.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Window};

/// The rule.
#[derive(Debug)]
pub struct MatchAll;

impl Rule for MatchAll {
    const METADATA: Metadata = Metadata::draft(
        "test-match-all",
        env!("CARGO_PKG_VERSION"),
        "Every event (test rule)",
        &[Field::Timestamp],
        &[Field::DeviceName],
    );

    fn matches(_event: &Event<'_>) -> bool {
        true
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).number("count", matched.len() as i64)]
    }
}

rulehost_sdk::export_rule!(MatchAll);
