// The rule both versions of `test-versioned` share; each crate includes it with its own
// version. Every event matches, and each window's alert carries the version that made it
// (as the rule itself knows it), so a test can check the host's attribution from the
// output alone.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Window};

/// The rule.
#[derive(Debug)]
pub struct Versioned;

impl Rule for Versioned {
    const METADATA: Metadata = Metadata::draft(
        "test-versioned",
        env!("CARGO_PKG_VERSION"),
        "Every event, tagged with the rule's version (test rule)",
        &[Field::ReportId],
        &[Field::ReportId],
    );

    fn matches(_event: &Event<'_>) -> bool {
        true
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).text("tag", env!("CARGO_PKG_VERSION"))]
    }
}

rulehost_sdk::export_rule!(Versioned);
