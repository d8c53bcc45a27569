//! Reads a file through WASI (built for wasm32-wasip2)
//!
//! Built only for the sandbox tests; never shipped.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Severity, Window};

/// The rule.
#[derive(Debug)]
pub struct TestRule;

impl Rule for TestRule {
    const METADATA: Metadata = Metadata {
        id: "test-wasi-import",
        version: env!("CARGO_PKG_VERSION"),
        title: "Reads a file through WASI (built for wasm32-wasip2)",
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
        std::fs::read(event.process_command_line()).is_ok()
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).number("count", matched.len() as i64)]
    }
}

rulehost_sdk::export_rule!(TestRule);
