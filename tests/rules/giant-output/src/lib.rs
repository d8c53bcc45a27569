//! Returns 100000 alerts from summarize
//!
//! Built only for the sandbox tests; never shipped.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Window};

/// The rule.
#[derive(Debug)]
pub struct TestRule;

impl Rule for TestRule {
    const METADATA: Metadata = Metadata::draft(
        "test-giant-output",
        env!("CARGO_PKG_VERSION"),
        "Returns 100000 alerts from summarize",
        &[Field::ProcessCommandLine],
        &[Field::DeviceName],
    );

    fn matches(event: &Event<'_>) -> bool {
        let _ = event;
        true
    }

    fn summarize(_window: Window, _matched: &[Event<'_>]) -> Vec<Alert> {
        (0..100_000).map(|i| Alert::new([0]).number("n", i)).collect()
    }
}

rulehost_sdk::export_rule!(TestRule);
