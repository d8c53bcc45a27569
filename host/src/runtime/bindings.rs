//! The generated bindings of the `detect:rule` world, one module per contract version the
//! host implements, kept private to the runtime. The rest of the host sees the curated
//! types of [`crate::events`] and [`crate::rules`], and [`RuleBindingsPre`] /
//! [`RuleBindings`], which call a rule of any of those versions alike.

use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::limits::RuleState;
use super::{AlertValue, pack};
use crate::events::{Field, ProcessEvent, for_each_field};
use crate::rules::{EventSource, Indicator, Operator, RuleMetadata, Severity};

/// The contract versions this host implements, newest first: the SDK builds against the
/// first; rules built against the others still load.
pub const CONTRACT_VERSIONS: [&str; 2] = [v0_2::VERSION, v0_1::VERSION];

/// One alert row as the rule returned it, before the runtime checks it.
pub(super) struct ReturnedAlert {
    pub columns: Vec<(String, AlertValue)>,
    pub events: Vec<u32>,
}

macro_rules! field_conversions {
    ($($variant:ident $name:literal,)*) => {
        impl From<Field> for wit::Field {
            fn from(field: Field) -> Self {
                match field {
                    $(Field::$variant => wit::Field::$variant,)*
                }
            }
        }

        impl From<wit::Field> for Field {
            fn from(field: wit::Field) -> Self {
                match field {
                    $(wit::Field::$variant => Field::$variant,)*
                }
            }
        }
    };
}

/// The bindings of one contract version and their conversions to the curated types.
/// Versions differ only in how a column's values travel (`$data` turns the packed text
/// into the version's type), so the rest is written once here.
macro_rules! contract_version {
    ($module:ident, $version:literal, $path:literal, $data:expr) => {
        mod $module {
            use super::*;

            /// The contract version these bindings implement.
            pub(super) const VERSION: &str = $version;

            mod generated {
                wasmtime::component::bindgen!({ world: "rule", path: $path });
            }

            use generated::detect::rule::types as wit;
            pub(super) use generated::{Rule, RulePre};

            for_each_field!(field_conversions);

            pub(super) fn metadata(bindings: &Rule, store: &mut Store<RuleState>) -> wasmtime::Result<RuleMetadata> {
                bindings.call_metadata(store).map(curated_metadata)
            }

            pub(super) fn evaluate(
                bindings: &Rule,
                store: &mut Store<RuleState>,
                events: &[ProcessEvent],
                fields: &[Field],
            ) -> wasmtime::Result<Vec<u32>> {
                bindings.call_evaluate(store, &batch(events, fields))
            }

            pub(super) fn summarize(
                bindings: &Rule,
                store: &mut Store<RuleState>,
                window: (i64, i64),
                events: &[ProcessEvent],
                fields: &[Field],
            ) -> wasmtime::Result<Vec<ReturnedAlert>> {
                let window = wit::Window { start_ms: window.0, end_ms: window.1 };
                let alerts = bindings.call_summarize(store, window, &batch(events, fields))?;
                Ok(alerts.into_iter().map(curated_alert).collect())
            }

            fn batch(events: &[ProcessEvent], fields: &[Field]) -> wit::EventBatch {
                let columns = fields
                    .iter()
                    .map(|&field| {
                        let (text, ends) = pack::column(events, field);
                        wit::Column { field: field.into(), data: $data(text), ends }
                    })
                    .collect();
                wit::EventBatch { count: events.len() as u32, columns }
            }

            fn curated_alert(alert: wit::Alert) -> ReturnedAlert {
                let columns = alert
                    .columns
                    .into_iter()
                    .map(|c| {
                        let value = match c.value {
                            wit::Value::Text(s) => AlertValue::Text(s),
                            wit::Value::Texts(v) => AlertValue::Texts(v),
                            wit::Value::Number(n) => AlertValue::Number(n),
                        };
                        (c.name, value)
                    })
                    .collect();
                ReturnedAlert { columns, events: alert.events }
            }

            fn curated_metadata(m: wit::RuleMetadata) -> RuleMetadata {
                RuleMetadata {
                    id: m.id,
                    version: m.version,
                    title: m.title,
                    description: m.description,
                    severity: match m.severity {
                        wit::Severity::Informational => Severity::Informational,
                        wit::Severity::Low => Severity::Low,
                        wit::Severity::Medium => Severity::Medium,
                        wit::Severity::High => Severity::High,
                    },
                    tactics: m.tactics,
                    techniques: m.techniques,
                    coverage: m
                        .coverage
                        .into_iter()
                        .map(|source| match source {
                            wit::EventSource::DefenderDeviceProcessEvents => {
                                EventSource::DefenderDeviceProcessEvents
                            }
                            wit::EventSource::SysmonProcessCreate => EventSource::SysmonProcessCreate,
                            wit::EventSource::SecurityProcessCreate => EventSource::SecurityProcessCreate,
                        })
                        .collect(),
                    reads: m.reads.into_iter().map(Field::from).collect(),
                    summary_reads: m.summary_reads.into_iter().map(Field::from).collect(),
                    indicators: m
                        .indicators
                        .into_iter()
                        .map(|i| Indicator {
                            field: i.field.into(),
                            operator: match i.operator {
                                wit::Operator::InCs => Operator::InCs,
                                wit::Operator::InCi => Operator::InCi,
                                wit::Operator::Has => Operator::Has,
                                wit::Operator::Contains => Operator::Contains,
                                wit::Operator::Startswith => Operator::Startswith,
                            },
                            values: i.values,
                        })
                        .collect(),
                    query_period: Duration::from_secs(m.query_period_seconds),
                    query_frequency: Duration::from_secs(m.query_frequency_seconds),
                }
            }
        }
    };
}

// 0.2.0: the values travel as a `string`, which the guest takes without checking it again.
contract_version!(v0_2, "0.2.0", "../wit/v0.2.0", std::convert::identity::<String>);
// 0.1.0: the values travel as a `list<u8>` (the same bytes; no copy to turn them into it).
contract_version!(v0_1, "0.1.0", "../wit/v0.1.0", String::into_bytes);

/// A rule's component linked and checked against its contract version, ready to
/// instantiate.
pub(super) enum RuleBindingsPre {
    V0_2(v0_2::RulePre<RuleState>),
    V0_1(v0_1::RulePre<RuleState>),
}

/// An instantiated rule of any implemented contract version.
pub(super) enum RuleBindings {
    V0_2(v0_2::Rule),
    V0_1(v0_1::Rule),
}

impl RuleBindingsPre {
    /// Checks the exports of `pre` against `contract`, one of [`CONTRACT_VERSIONS`].
    pub(super) fn new(contract: &str, pre: InstancePre<RuleState>) -> wasmtime::Result<Self> {
        match contract {
            v0_2::VERSION => Ok(Self::V0_2(v0_2::RulePre::new(pre)?)),
            v0_1::VERSION => Ok(Self::V0_1(v0_1::RulePre::new(pre)?)),
            other => Err(wasmtime::format_err!("contract {other} is not implemented")),
        }
    }

    pub(super) fn instantiate(&self, store: &mut Store<RuleState>) -> wasmtime::Result<RuleBindings> {
        match self {
            Self::V0_2(pre) => pre.instantiate(store).map(RuleBindings::V0_2),
            Self::V0_1(pre) => pre.instantiate(store).map(RuleBindings::V0_1),
        }
    }
}

impl RuleBindings {
    pub(super) fn metadata(&self, store: &mut Store<RuleState>) -> wasmtime::Result<RuleMetadata> {
        match self {
            Self::V0_2(b) => v0_2::metadata(b, store),
            Self::V0_1(b) => v0_1::metadata(b, store),
        }
    }

    /// Packs the `fields` of `events` and calls `evaluate`.
    pub(super) fn evaluate(
        &self,
        store: &mut Store<RuleState>,
        events: &[ProcessEvent],
        fields: &[Field],
    ) -> wasmtime::Result<Vec<u32>> {
        match self {
            Self::V0_2(b) => v0_2::evaluate(b, store, events, fields),
            Self::V0_1(b) => v0_1::evaluate(b, store, events, fields),
        }
    }

    /// Packs the `fields` of `events` and calls `summarize` for `window` (start and end, ms).
    pub(super) fn summarize(
        &self,
        store: &mut Store<RuleState>,
        window: (i64, i64),
        events: &[ProcessEvent],
        fields: &[Field],
    ) -> wasmtime::Result<Vec<ReturnedAlert>> {
        match self {
            Self::V0_2(b) => v0_2::summarize(b, store, window, events, fields),
            Self::V0_1(b) => v0_1::summarize(b, store, window, events, fields),
        }
    }
}
