//! A rule for tests: every event matches, and each window becomes one alert counting them.
//! With `--matches` it prints every normalized event, which is how the tests compare the
//! normalization of each source with golden files.

use rulehost_sdk::{Alert, Event, EventSource, Field, Metadata, Rule, Severity, Window};

/// The rule.
#[derive(Debug)]
pub struct MatchAll;

impl Rule for MatchAll {
    const METADATA: Metadata = Metadata {
        id: "test-match-all",
        version: env!("CARGO_PKG_VERSION"),
        title: "Every event (test rule)",
        description: "Matches every event.",
        severity: Severity::Informational,
        tactics: &[],
        techniques: &[],
        coverage: &[
            EventSource::DefenderDeviceProcessEvents,
            EventSource::SysmonProcessCreate,
            EventSource::SecurityProcessCreate,
        ],
        reads: &[Field::Timestamp],
        summary_reads: &[Field::DeviceName],
        indicators: &[],
        query_period_seconds: 3600,
        query_frequency_seconds: 3600,
    };

    fn matches(_event: &Event<'_>) -> bool {
        true
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).number("count", matched.len() as i64)]
    }
}

rulehost_sdk::export_rule!(MatchAll);
