//! Exports an `_initialize` that never returns: instantiating it must run out of time,
//! not hang the host.
//!
//! Built only for the sandbox tests; never shipped.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Window};

/// The initializer wit-component calls when the component is instantiated.
#[allow(unsafe_code, reason = "the initializer is exported under its C name, which only `no_mangle` gives")]
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// The rule.
#[derive(Debug)]
pub struct TestRule;

impl Rule for TestRule {
    const METADATA: Metadata = Metadata::draft(
        "test-initializer-loop",
        env!("CARGO_PKG_VERSION"),
        "Its initializer never returns",
        &[Field::ProcessCommandLine],
        &[Field::DeviceName],
    );

    fn matches(event: &Event<'_>) -> bool {
        event.process_command_line().contains("whoami")
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).number("count", matched.len() as i64)]
    }
}

rulehost_sdk::export_rule!(TestRule);
