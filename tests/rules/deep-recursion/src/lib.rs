//! Recurses without end in evaluate
//!
//! Built only for the sandbox tests; never shipped.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Window};

/// The rule.
#[derive(Debug)]
pub struct TestRule;

impl Rule for TestRule {
    const METADATA: Metadata = Metadata::draft(
        "test-deep-recursion",
        env!("CARGO_PKG_VERSION"),
        "Recurses without end in evaluate",
        &[Field::ProcessCommandLine],
        &[Field::DeviceName],
    );

    fn matches(event: &Event<'_>) -> bool {
        depth(std::hint::black_box(event.process_command_line().len() as u64)) > 0
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).number("count", matched.len() as i64)]
    }
}

/// Recursion that is not a tail call, so each level keeps a frame. It never returns, on
/// purpose: the stack must overflow.
#[allow(unconditional_recursion)]
fn depth(n: u64) -> u64 {
    let below = depth(std::hint::black_box(n.wrapping_add(1)));
    std::hint::black_box(below.wrapping_add(n))
}

rulehost_sdk::export_rule!(TestRule);
