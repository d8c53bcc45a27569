//! The rulehost guest SDK: everything a rule author needs, and nothing else.
//!
//! A rule is a type that implements [`Rule`]: its [`Metadata`], the `where` stages as
//! [`Rule::matches`] over one [`Event`], and the `summarize` stage as [`Rule::summarize`]
//! over the matched events of one window. [`export_rule!`] turns it into the exports of the
//! `detect:rule` world; the SDK unpacks the host's packed batches into `&str` views, so a
//! rule reads like its KQL:
//!
//! ```
//! use rulehost_sdk::{kql, Alert, Event, EventSource, Field, Metadata, Rule, Severity, Window};
//!
//! struct ShellFromWebServer;
//!
//! impl Rule for ShellFromWebServer {
//!     const METADATA: Metadata = Metadata {
//!         id: "example-shell-from-web-server",
//!         version: "0.1.0",
//!         title: "Shell started by a web server",
//!         description: "w3wp.exe starting cmd.exe.",
//!         severity: Severity::Medium,
//!         tactics: &["Execution"],
//!         techniques: &["T1059"],
//!         coverage: &[EventSource::DefenderDeviceProcessEvents],
//!         reads: &[Field::InitiatingProcessFileName, Field::FileName],
//!         summary_reads: &[Field::DeviceName],
//!         indicators: &[],
//!         query_period_seconds: 3600,
//!         query_frequency_seconds: 3600,
//!     };
//!
//!     fn matches(event: &Event<'_>) -> bool {
//!         kql::in_cs(event.initiating_process_file_name(), &["w3wp.exe"])
//!             && kql::in_ci(event.file_name(), &["cmd.exe"])
//!     }
//!
//!     fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
//!         vec![Alert::new(0..matched.len()).text("DeviceName", matched[0].device_name())]
//!     }
//! }
//! // In the rule crate: rulehost_sdk::export_rule!(ShellFromWebServer);
//!
//! let batch = rulehost_sdk::Batch::from_rows(&[&[
//!     (Field::InitiatingProcessFileName, "w3wp.exe"),
//!     (Field::FileName, "CMD.EXE"),
//! ]]);
//! assert!(ShellFromWebServer::matches(&batch.event(0)));
//! ```

pub mod aggregate;
mod batch;
pub mod kql;
mod swar;

pub use batch::{Batch, Event};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "rule",
        path: "../../wit/v0.2.0",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "rulehost_sdk::bindings",
    });
}

pub use bindings::detect::rule::types::{EventSource, Field, Operator, Severity, Window};

/// The version of the `detect:rule` contract this SDK builds rules against.
pub const CONTRACT_VERSION: &str = match core::str::from_utf8(&CONTRACT_VERSION_SECTION) {
    Ok(version) => version,
    Err(_) => panic!("the contract version is UTF-8"),
};

/// The content of the `detect:contract-version` custom section that [`export_rule!`]
/// puts in every rule, so the host can refuse an incompatible rule before compiling it.
#[doc(hidden)]
pub const CONTRACT_VERSION_SECTION: [u8; 5] = *b"0.2.0";

/// What a rule is. See the `rule-metadata` record of the contract for each field.
#[derive(Debug, Clone, Copy)]
pub struct Metadata {
    pub id: &'static str,
    pub version: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub severity: Severity,
    pub tactics: &'static [&'static str],
    pub techniques: &'static [&'static str],
    pub coverage: &'static [EventSource],
    /// The fields [`Rule::matches`] reads. Any other field reads as `""` there.
    pub reads: &'static [Field],
    /// The fields [`Rule::summarize`] reads. Any other field reads as `""` there.
    pub summary_reads: &'static [Field],
    pub indicators: &'static [Indicator],
    pub query_period_seconds: u64,
    pub query_frequency_seconds: u64,
}

impl Metadata {
    /// Metadata with only what a rule cannot do without: informational severity, no
    /// ATT&CK mapping, coverage or indicators, a one-hour period. For drafts and test
    /// rules; a published rule fills in every field.
    pub const fn draft(
        id: &'static str,
        version: &'static str,
        title: &'static str,
        reads: &'static [Field],
        summary_reads: &'static [Field],
    ) -> Self {
        Metadata {
            id,
            version,
            title,
            description: title,
            severity: Severity::Informational,
            tactics: &[],
            techniques: &[],
            coverage: &[],
            reads,
            summary_reads,
            indicators: &[],
            query_period_seconds: 3600,
            query_frequency_seconds: 3600,
        }
    }
}

/// A condition a rule tests, `field operator (values...)`, for people and tooling.
#[derive(Debug, Clone, Copy)]
pub struct Indicator {
    pub field: Field,
    pub operator: Operator,
    pub values: &'static [&'static str],
}

/// A detection rule. Implement it and register the type with [`export_rule!`].
pub trait Rule {
    /// What the rule is; read once when the host loads it.
    const METADATA: Metadata;

    /// The `where` stages: does this event match?
    fn matches(event: &Event<'_>) -> bool;

    /// The `summarize` / `extend` stages over the matched events of one window, in
    /// event-time order.
    fn summarize(window: Window, matched: &[Event<'_>]) -> Vec<Alert>;
}

/// One alert: named columns in the query's order, and the matched events it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    columns: Vec<(String, Value)>,
    events: Vec<u32>,
}

/// The value of an alert column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Texts(Vec<String>),
    Number(i64),
}

impl Alert {
    /// An alert covering the matched events at `events` (indices into the slice given to
    /// [`Rule::summarize`]).
    pub fn new(events: impl IntoIterator<Item = usize>) -> Self {
        let events = events
            .into_iter()
            .map(|i| u32::try_from(i).expect("a batch holds fewer than 2^32 events"))
            .collect();
        Self { columns: Vec::new(), events }
    }

    /// Adds a text column.
    #[must_use]
    pub fn text(mut self, name: &str, value: impl Into<String>) -> Self {
        self.columns.push((name.to_owned(), Value::Text(value.into())));
        self
    }

    /// Adds a column holding a list of texts.
    #[must_use]
    pub fn texts(mut self, name: &str, values: Vec<String>) -> Self {
        self.columns.push((name.to_owned(), Value::Texts(values)));
        self
    }

    /// Adds a numeric column.
    #[must_use]
    pub fn number(mut self, name: &str, value: i64) -> Self {
        self.columns.push((name.to_owned(), Value::Number(value)));
        self
    }

    /// The columns, in order.
    pub fn columns(&self) -> &[(String, Value)] {
        &self.columns
    }

    /// The value of the column `name`.
    pub fn column(&self, name: &str) -> Option<&Value> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The matched events this alert covers.
    pub fn events(&self) -> &[u32] {
        &self.events
    }
}

/// The glue [`export_rule!`] expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::bindings::detect::rule::types as wit;
    use super::{Alert, Batch, Metadata, Rule, Value};

    pub fn metadata<R: Rule>() -> wit::RuleMetadata {
        let m: Metadata = R::METADATA;
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        wit::RuleMetadata {
            id: m.id.into(),
            version: m.version.into(),
            title: m.title.into(),
            description: m.description.into(),
            severity: m.severity,
            tactics: strings(m.tactics),
            techniques: strings(m.techniques),
            coverage: m.coverage.to_vec(),
            reads: m.reads.to_vec(),
            summary_reads: m.summary_reads.to_vec(),
            indicators: m
                .indicators
                .iter()
                .map(|i| wit::Indicator { field: i.field, operator: i.operator, values: strings(i.values) })
                .collect(),
            query_period_seconds: m.query_period_seconds,
            query_frequency_seconds: m.query_frequency_seconds,
        }
    }

    pub fn evaluate<R: Rule>(batch: wit::EventBatch) -> Vec<u32> {
        let batch = Batch::from_wit(batch);
        (0..batch.len()).filter(|&i| R::matches(&batch.event(i))).map(|i| i as u32).collect()
    }

    pub fn summarize<R: Rule>(window: wit::Window, matched: wit::EventBatch) -> Vec<wit::Alert> {
        let batch = Batch::from_wit(matched);
        let events: Vec<_> = (0..batch.len()).map(|i| batch.event(i)).collect();
        R::summarize(window, &events).into_iter().map(into_wit).collect()
    }

    fn into_wit(alert: Alert) -> wit::Alert {
        wit::Alert {
            columns: alert
                .columns
                .into_iter()
                .map(|(name, value)| wit::AlertColumn {
                    name,
                    value: match value {
                        Value::Text(s) => wit::Value::Text(s),
                        Value::Texts(v) => wit::Value::Texts(v),
                        Value::Number(n) => wit::Value::Number(n),
                    },
                })
                .collect(),
            events: alert.events,
        }
    }
}

/// Exports a [`Rule`] as the `detect:rule` world and records the contract version the
/// rule was built against in the `detect:contract-version` custom section.
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Export;
            impl $crate::bindings::Guest for Export {
                fn metadata() -> $crate::bindings::RuleMetadata {
                    $crate::__private::metadata::<$rule>()
                }
                fn evaluate(batch: $crate::bindings::EventBatch) -> Vec<u32> {
                    $crate::__private::evaluate::<$rule>(batch)
                }
                fn summarize(
                    window: $crate::bindings::Window,
                    matched: $crate::bindings::EventBatch,
                ) -> Vec<$crate::bindings::Alert> {
                    $crate::__private::summarize::<$rule>(window, matched)
                }
            }
    $crate::bindings::export!(Export with_types_in $crate::bindings);
        };
        $crate::contract_version_section!();
    };
}

/// Records the contract version in the `detect:contract-version` custom section. Part of
/// [`export_rule!`]; a component that implements the raw bindings itself needs it too.
#[macro_export]
macro_rules! contract_version_section {
    () => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(link_section = "detect:contract-version")]
            #[used]
            static CONTRACT_VERSION: [u8; $crate::CONTRACT_VERSION_SECTION.len()] =
                $crate::CONTRACT_VERSION_SECTION;
        };
    };
}
