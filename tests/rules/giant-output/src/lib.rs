//! Returns 100000 alerts from summarize
//!
//! Built only for the sandbox tests; never shipped.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Severity, Window};

/// The rule.
#[derive(Debug)]
pub struct TestRule;

impl Rule for TestRule {
    const METADATA: Metadata = Metadata {
        id: "test-giant-output",
        version: env!("CARGO_PKG_VERSION"),
        title: "Returns 100000 alerts from summarize",
        description: "A misbehaving rule for the sandbox tests.",
        severity: Severity::Informational,
        tactics: &[],
        techniques: &[],
        coverage: &[],
        reads: &[Field::ProcessCommandLine],
        summary_reads: &[Field::DeviceName],
        indicators: &[],
        query_period_seconds: 3600,
        query_frequency_seconds: 3600,
    };

    fn matches(event: &Event<'_>) -> bool {
        let _ = event;
        true
    }

    fn summarize(_window: Window, _matched: &[Event<'_>]) -> Vec<Alert> {
        (0..100_000).map(|i| Alert::new([0]).number("n", i)).collect()
    }
}

rulehost_sdk::export_rule!(TestRule);
