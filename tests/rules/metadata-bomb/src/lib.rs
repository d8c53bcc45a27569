//! Declares that it reads one field 1,000,000 times, in `reads` and in `summary-reads`: a
//! legal `list<field>` of 1 MB that a host packing one column per entry turns into
//! gigabytes.
//!
//! Built only for the sandbox tests; never shipped.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Window};

/// The rule.
#[derive(Debug)]
pub struct TestRule;

impl Rule for TestRule {
    const METADATA: Metadata = Metadata::draft(
        "test-metadata-bomb",
        env!("CARGO_PKG_VERSION"),
        "Declares one field 1,000,000 times",
        &[Field::ProcessCommandLine; 1_000_000],
        &[Field::DeviceName; 1_000_000],
    );

    fn matches(event: &Event<'_>) -> bool {
        !event.process_command_line().is_empty()
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).number("count", matched.len() as i64)]
    }
}

rulehost_sdk::export_rule!(TestRule);
