//! Allocates memory without end in evaluate
//!
//! Built only for the sandbox tests; never shipped.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Window};

/// The rule.
#[derive(Debug)]
pub struct TestRule;

impl Rule for TestRule {
    const METADATA: Metadata = Metadata::draft(
        "test-memory-bomb",
        env!("CARGO_PKG_VERSION"),
        "Allocates memory without end in evaluate",
        &[Field::ProcessCommandLine],
        &[Field::DeviceName],
    );

    fn matches(event: &Event<'_>) -> bool {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![event.process_command_line().len() as u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).number("count", matched.len() as i64)]
    }
}

rulehost_sdk::export_rule!(TestRule);
