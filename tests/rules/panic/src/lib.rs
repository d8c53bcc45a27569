//! Panics in evaluate
//!
//! Built only for the sandbox tests; never shipped.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Window};

/// The rule.
#[derive(Debug)]
pub struct TestRule;

impl Rule for TestRule {
    const METADATA: Metadata = Metadata::draft(
        "test-panic",
        env!("CARGO_PKG_VERSION"),
        "Panics in evaluate",
        &[Field::ProcessCommandLine],
        &[Field::DeviceName],
    );

    fn matches(event: &Event<'_>) -> bool {
        if std::hint::black_box(true) {
            panic!("a bug in the rule: {}", event.process_command_line().len());
        }
        false
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).number("count", matched.len() as i64)]
    }
}

rulehost_sdk::export_rule!(TestRule);
