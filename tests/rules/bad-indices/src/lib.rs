//! A rule that breaks the contract's promise about match indices: it implements the raw
//! exports (the SDK would never return such indices) and returns, for a batch of an even
//! number of events, the first index twice, and for an odd one, an index past the end.
//!
//! Built only for the sandbox tests; never shipped.

#[cfg(target_arch = "wasm32")]
mod raw {
    use rulehost_sdk::bindings::{Alert, EventBatch, Guest, RuleMetadata, Window};
    use rulehost_sdk::{Field, Severity};

    struct BadIndices;

    impl Guest for BadIndices {
        fn metadata() -> RuleMetadata {
            RuleMetadata {
                id: "test-bad-indices".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                title: "Returns duplicated and out-of-range match indices".into(),
                description: "A misbehaving rule for the sandbox tests.".into(),
                severity: Severity::Informational,
                tactics: vec![],
                techniques: vec![],
                coverage: vec![],
                reads: vec![Field::FileName],
                summary_reads: vec![Field::FileName],
                indicators: vec![],
                query_period_seconds: 3600,
                query_frequency_seconds: 3600,
            }
        }

        fn evaluate(batch: EventBatch) -> Vec<u32> {
            if batch.count % 2 == 0 { vec![0, 0] } else { vec![batch.count] }
        }

        fn summarize(_window: Window, _matched: EventBatch) -> Vec<Alert> {
            vec![]
        }
    }

    rulehost_sdk::bindings::export!(BadIndices with_types_in rulehost_sdk::bindings);
}

rulehost_sdk::contract_version_section!();
