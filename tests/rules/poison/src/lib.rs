//! A rule for tests: every event matches, but the rule panics on an event whose command
//! line holds `POISON`, as a rule with a bug panics on one odd input. The host must lose
//! that event only, not the batch beside it.
//!
//! Built only for the sandbox tests; never shipped.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Window};

/// The rule.
#[derive(Debug)]
pub struct Poison;

impl Rule for Poison {
    const METADATA: Metadata = Metadata::draft(
        "test-poison",
        env!("CARGO_PKG_VERSION"),
        "Every event, and a panic on a marked one (test rule)",
        &[Field::ProcessCommandLine],
        &[Field::DeviceName],
    );

    fn matches(event: &Event<'_>) -> bool {
        assert!(!event.process_command_line().contains("POISON"), "a bug in the rule");
        true
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).number("count", matched.len() as i64)]
    }
}

rulehost_sdk::export_rule!(Poison);
