//! Executes unreachable in evaluate
//!
//! Built only for the sandbox tests; never shipped.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Window};

/// The rule.
#[derive(Debug)]
pub struct TestRule;

impl Rule for TestRule {
    const METADATA: Metadata = Metadata::draft(
        "test-unreachable",
        env!("CARGO_PKG_VERSION"),
        "Executes unreachable in evaluate",
        &[Field::ProcessCommandLine],
        &[Field::DeviceName],
    );

    fn matches(event: &Event<'_>) -> bool {
        let _ = event;
        trap()
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).number("count", matched.len() as i64)]
    }
}

/// The `unreachable` instruction itself (natively, a panic).
#[cfg(target_arch = "wasm32")]
fn trap() -> bool {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> bool {
    unreachable!("the wasm unreachable instruction")
}

rulehost_sdk::export_rule!(TestRule);
