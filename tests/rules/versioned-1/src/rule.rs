// The rule both versions of `test-versioned` share; each crate includes it with its own
// version. Every event matches, and each window's alert carries the version that made it
// (as the rule itself knows it), so a test can check the host's attribution from the
// output alone.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Severity, Window};

/// The rule.
#[derive(Debug)]
pub struct Versioned;

impl Rule for Versioned {
    const METADATA: Metadata = Metadata {
        id: "test-versioned",
        version: env!("CARGO_PKG_VERSION"),
        title: "Every event, tagged with the rule's version (test rule)",
        description: "Matches every event; its alerts carry the version of the rule that made them.",
        severity: Severity::Informational,
        tactics: &[],
        techniques: &[],
        coverage: &[],
        reads: &[Field::ReportId],
        summary_reads: &[Field::ReportId],
        indicators: &[],
        query_period_seconds: 60,
        query_frequency_seconds: 60,
    };

    fn matches(_event: &Event<'_>) -> bool {
        true
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).text("tag", env!("CARGO_PKG_VERSION"))]
    }
}

rulehost_sdk::export_rule!(Versioned);
