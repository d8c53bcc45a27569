//! Spins for a fixed amount of work per batch
//!
//! Built only for the sandbox tests; never shipped.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Window};

/// The rule.
#[derive(Debug)]
pub struct TestRule;

impl Rule for TestRule {
    const METADATA: Metadata = Metadata::draft(
        "test-slow",
        env!("CARGO_PKG_VERSION"),
        "Spins for a fixed amount of work per batch",
        &[Field::ProcessCommandLine],
        &[Field::DeviceName],
    );

    fn matches(event: &Event<'_>) -> bool {
        // Work proportional to the command line: about 50 million steps in all for the
        // fixtures' few events, tens of milliseconds, far below the default deadline.
        let mut x = event.process_command_line().len() as u64 + 1;
        for _ in 0..std::hint::black_box(6_000_000u64) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
        }
        x == 0
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).number("count", matched.len() as i64)]
    }
}

rulehost_sdk::export_rule!(TestRule);
