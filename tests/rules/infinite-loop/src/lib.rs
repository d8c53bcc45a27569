//! Loops forever in evaluate
//!
//! Built only for the sandbox tests; never shipped.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Window};

/// The rule.
#[derive(Debug)]
pub struct TestRule;

impl Rule for TestRule {
    const METADATA: Metadata = Metadata::draft(
        "test-infinite-loop",
        env!("CARGO_PKG_VERSION"),
        "Loops forever in evaluate",
        &[Field::ProcessCommandLine],
        &[Field::DeviceName],
    );

    fn matches(event: &Event<'_>) -> bool {
        // An endless loop the optimizer cannot remove: it reads the event each time.
        let mut n = 0usize;
        loop {
            n = n.wrapping_add(std::hint::black_box(event.process_command_line()).len());
            std::hint::black_box(n);
        }
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).number("count", matched.len() as i64)]
    }
}

rulehost_sdk::export_rule!(TestRule);
