//! The generated bindings of the `detect:rule` world, one module per contract version the
//! host implements, kept private to the runtime. The rest of the host sees the curated
//! types of [`crate::events`] and [`crate::contract`], and [`RuleBindingsPre`] /
//! [`RuleBindings`], which call a rule of any of those versions alike.

use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::AlertValue;
use super::limits::RuleState;
use super::pack::{Batch, PackedColumn};
use crate::contract::{EventSource, Indicator, Operator, RuleMetadata, Severity};
use crate::events::{Field, for_each_field};

/// The contract versions this host implements, newest first: Sigma packs are built against
/// the first, the SDK's single rules against the third; rules built against any of them load.
pub const CONTRACT_VERSIONS: [&str; 4] = [v0_4::VERSION, v0_3::VERSION, v0_2::VERSION, v0_1::VERSION];

/// One alert row as the rule returned it, before the runtime checks it.
pub(super) struct ReturnedAlert {
    pub columns: Vec<(String, AlertValue)>,
    pub events: Vec<u32>,
}

/// Contracts before 0.3.0: only the first group of fields exists in their bindings. A rule of
/// such a contract reads only fields it declared, which are all of that group.
macro_rules! old_field_conversions {
    ([$($old:ident $old_name:literal,)*] [$($new:ident $new_name:literal,)*]) => {
        impl From<Field> for wit::Field {
            fn from(field: Field) -> Self {
                match field {
                    $(Field::$old => wit::Field::$old,)*
                    $(Field::$new => unreachable!("a rule of contract {VERSION} reads only the fields of its contract, not {}", Field::$new),)*
                }
            }
        }

        impl From<wit::Field> for Field {
            fn from(field: wit::Field) -> Self {
                match field {
                    $(wit::Field::$old => Field::$old,)*
                }
            }
        }
    };
}

/// Contract 0.3.0 and later: every field.
macro_rules! all_field_conversions {
    ([$($old:ident $old_name:literal,)*] [$($new:ident $new_name:literal,)*]) => {
        impl From<Field> for wit::Field {
            fn from(field: Field) -> Self {
                match field {
                    $(Field::$old => wit::Field::$old,)*
                    $(Field::$new => wit::Field::$new,)*
                }
            }
        }

        impl From<wit::Field> for Field {
            fn from(field: wit::Field) -> Self {
                match field {
                    $(wit::Field::$old => Field::$old,)*
                    $(wit::Field::$new => Field::$new,)*
                }
            }
        }
    };
}

/// The bindings of one contract version and their conversions to the curated types.
/// Versions differ in how a column's values travel (`$data` turns the packed text into the
/// version's type, `$undata` back after the call, for the next to fill; `[starts]` where a
/// column says where each value starts, so that values may be shared), in their fields and
/// severities, and in their world (`rule` or `pack`);
/// the rest is written once here.
macro_rules! contract_version {
    ($module:ident, $version:literal, $path:literal, $world:literal, $data:expr, $undata:expr, [$($starts:ident)?], $fields:ident,
     { $($severity:ident,)* }, { $($operator:ident,)* }, $calls:ident) => {
        mod $module {
            use super::*;

            /// The contract version these bindings implement.
            pub(super) const VERSION: &str = $version;

            mod generated {
                wasmtime::component::bindgen!({ world: $world, path: $path });
            }

            use generated::detect::rule::types as wit;

            for_each_field!($fields);

            $calls!();

            fn operator(operator: wit::Operator) -> Operator {
                match operator {
                    $(wit::Operator::$operator => Operator::$operator,)*
                }
            }

            /// Whether a column of this version says where each value starts.
            pub(super) const SHARES_VALUES: bool = { let names: &[&str] = &[$(stringify!($starts))?]; !names.is_empty() };

            /// The batch in the version's types; its columns are taken, for [`restore`] to
            /// give back.
            fn batch(batch: &mut Batch<'_>) -> wit::EventBatch {
                let columns = batch
                    .fields
                    .iter()
                    .zip(std::mem::take(&mut batch.columns))
                    .map(|(&field, column)| {
                        debug_assert!(SHARES_VALUES || column.starts.is_empty(), "contract {VERSION} has no starts");
                        wit::Column { field: field.into(), data: $data(column.text), ends: column.ends, $($starts: column.starts,)? }
                    })
                    .collect();
                wit::EventBatch { count: batch.count as u32, columns }
            }

            /// Gives the columns of `packed` back to `batch`, with their room, for the next
            /// call to fill.
            fn restore(batch: &mut Batch<'_>, packed: wit::EventBatch) {
                batch.columns = packed
                    .columns
                    .into_iter()
                    .map(|c| {
                        #[allow(unused_mut)]
                        let mut column = PackedColumn { text: $undata(c.data), ends: c.ends, starts: Vec::new() };
                        $(column.starts = c.$starts;)?
                        column
                    })
                    .collect();
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
                        $(wit::Severity::$severity => Severity::$severity,)*
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
                        .map(|i| Indicator { field: i.field.into(), operator: operator(i.operator), values: i.values })
                        .collect(),
                    query_period: Duration::from_secs(m.query_period_seconds),
                    query_frequency: Duration::from_secs(m.query_frequency_seconds),
                }
            }
        }
    };
}

/// The calls of the `rule` world (contracts 0.1.0 and 0.2.0): one rule, a pack of one.
macro_rules! rule_world_calls {
    () => {
        pub(super) use generated::{Rule as Bindings, RulePre as BindingsPre};

        pub(super) fn metadata(
            bindings: &Bindings,
            store: &mut Store<RuleState>,
        ) -> wasmtime::Result<Vec<RuleMetadata>> {
            bindings.call_metadata(store).map(|m| vec![curated_metadata(m)])
        }

        pub(super) fn evaluate(
            bindings: &Bindings,
            store: &mut Store<RuleState>,
            events: &mut Batch<'_>,
        ) -> wasmtime::Result<Vec<(u32, Vec<u32>)>> {
            let packed = batch(events);
            let matched = bindings.call_evaluate(store, &packed);
            restore(events, packed);
            let matched = matched?;
            Ok(if matched.is_empty() { Vec::new() } else { vec![(0, matched)] })
        }

        pub(super) fn summarize(
            bindings: &Bindings,
            store: &mut Store<RuleState>,
            _rule: u32,
            window: (i64, i64),
            events: &mut Batch<'_>,
        ) -> wasmtime::Result<Vec<ReturnedAlert>> {
            let window = wit::Window { start_ms: window.0, end_ms: window.1 };
            let packed = batch(events);
            let alerts = bindings.call_summarize(store, window, &packed);
            restore(events, packed);
            Ok(alerts?.into_iter().map(curated_alert).collect())
        }
    };
}

/// The calls of the `pack` world (contracts 0.3.0 and 0.4.0): many rules in one component.
macro_rules! pack_world_calls {
    () => {
        pub(super) use generated::{Pack as Bindings, PackPre as BindingsPre};

        pub(super) fn metadata(
            bindings: &Bindings,
            store: &mut Store<RuleState>,
        ) -> wasmtime::Result<Vec<RuleMetadata>> {
            bindings.call_metadata(store).map(|rules| rules.into_iter().map(curated_metadata).collect())
        }

        pub(super) fn evaluate(
            bindings: &Bindings,
            store: &mut Store<RuleState>,
            events: &mut Batch<'_>,
        ) -> wasmtime::Result<Vec<(u32, Vec<u32>)>> {
            let packed = batch(events);
            let matched = bindings.call_evaluate(store, &packed);
            restore(events, packed);
            Ok(matched?.into_iter().map(|m| (m.rule, m.events)).collect())
        }

        pub(super) fn summarize(
            bindings: &Bindings,
            store: &mut Store<RuleState>,
            rule: u32,
            window: (i64, i64),
            events: &mut Batch<'_>,
        ) -> wasmtime::Result<Vec<ReturnedAlert>> {
            let window = wit::Window { start_ms: window.0, end_ms: window.1 };
            let packed = batch(events);
            let alerts = bindings.call_summarize(store, rule, window, &packed);
            restore(events, packed);
            Ok(alerts?.into_iter().map(curated_alert).collect())
        }
    };
}

// 0.4.0: a column's values may be shared (`starts`).
contract_version!(v0_4, "0.4.0", "../wit/v0.4.0", "pack", std::convert::identity::<String>, std::convert::identity::<String>, [starts], all_field_conversions,
    { Informational, Low, Medium, High, Critical, },
    { InCs, InCi, Has, Contains, Startswith, Endswith, EqualsCi, Wildcard, Regex, }, pack_world_calls);
// 0.3.0: packs; the fields Sigma reads; `critical`.
contract_version!(v0_3, "0.3.0", "../wit/v0.3.0", "pack", std::convert::identity::<String>, std::convert::identity::<String>, [], all_field_conversions,
    { Informational, Low, Medium, High, Critical, },
    { InCs, InCi, Has, Contains, Startswith, Endswith, EqualsCi, Wildcard, Regex, }, pack_world_calls);
// 0.2.0: the values travel as a `string`, which the guest takes without checking it again.
contract_version!(v0_2, "0.2.0", "../wit/v0.2.0", "rule", std::convert::identity::<String>, std::convert::identity::<String>, [], old_field_conversions,
    { Informational, Low, Medium, High, },
    { InCs, InCi, Has, Contains, Startswith, }, rule_world_calls);
// 0.1.0: the values travel as a `list<u8>` (the same bytes; no copy to turn them into it),
// and are not given back (they would be checked as UTF-8 again).
contract_version!(v0_1, "0.1.0", "../wit/v0.1.0", "rule", String::into_bytes, |_: Vec<u8>| String::new(), [], old_field_conversions,
    { Informational, Low, Medium, High, },
    { InCs, InCi, Has, Contains, Startswith, }, rule_world_calls);

/// A component linked and checked against its contract version, ready to instantiate.
pub(super) enum RuleBindingsPre {
    V0_4(v0_4::BindingsPre<RuleState>),
    V0_3(v0_3::BindingsPre<RuleState>),
    V0_2(v0_2::BindingsPre<RuleState>),
    V0_1(v0_1::BindingsPre<RuleState>),
}

/// An instantiated component of any implemented contract version.
pub(super) enum RuleBindings {
    V0_4(v0_4::Bindings),
    V0_3(v0_3::Bindings),
    V0_2(v0_2::Bindings),
    V0_1(v0_1::Bindings),
}

impl RuleBindingsPre {
    /// Checks the exports of `pre` against `contract`, one of [`CONTRACT_VERSIONS`].
    pub(super) fn new(contract: &str, pre: InstancePre<RuleState>) -> wasmtime::Result<Self> {
        match contract {
            v0_4::VERSION => Ok(Self::V0_4(v0_4::BindingsPre::new(pre)?)),
            v0_3::VERSION => Ok(Self::V0_3(v0_3::BindingsPre::new(pre)?)),
            v0_2::VERSION => Ok(Self::V0_2(v0_2::BindingsPre::new(pre)?)),
            v0_1::VERSION => Ok(Self::V0_1(v0_1::BindingsPre::new(pre)?)),
            other => Err(wasmtime::format_err!("contract {other} is not implemented")),
        }
    }

    /// Whether the component's contract lets a column's values be shared (see
    /// [`super::pack`]).
    pub(super) fn shares_values(&self) -> bool {
        match self {
            Self::V0_4(_) => v0_4::SHARES_VALUES,
            Self::V0_3(_) => v0_3::SHARES_VALUES,
            Self::V0_2(_) => v0_2::SHARES_VALUES,
            Self::V0_1(_) => v0_1::SHARES_VALUES,
        }
    }

    pub(super) fn instantiate(&self, store: &mut Store<RuleState>) -> wasmtime::Result<RuleBindings> {
        match self {
            Self::V0_4(pre) => pre.instantiate(store).map(RuleBindings::V0_4),
            Self::V0_3(pre) => pre.instantiate(store).map(RuleBindings::V0_3),
            Self::V0_2(pre) => pre.instantiate(store).map(RuleBindings::V0_2),
            Self::V0_1(pre) => pre.instantiate(store).map(RuleBindings::V0_1),
        }
    }
}

impl RuleBindings {
    /// The metadata of every rule of the component (one, before 0.3.0).
    pub(super) fn metadata(&self, store: &mut Store<RuleState>) -> wasmtime::Result<Vec<RuleMetadata>> {
        match self {
            Self::V0_4(b) => v0_4::metadata(b, store),
            Self::V0_3(b) => v0_3::metadata(b, store),
            Self::V0_2(b) => v0_2::metadata(b, store),
            Self::V0_1(b) => v0_1::metadata(b, store),
        }
    }

    /// Calls `evaluate` over the packed `events`: for each rule that matched, its index and
    /// the events' indices, as the component returned them.
    pub(super) fn evaluate(
        &self,
        store: &mut Store<RuleState>,
        events: &mut Batch<'_>,
    ) -> wasmtime::Result<Vec<(u32, Vec<u32>)>> {
        match self {
            Self::V0_4(b) => v0_4::evaluate(b, store, events),
            Self::V0_3(b) => v0_3::evaluate(b, store, events),
            Self::V0_2(b) => v0_2::evaluate(b, store, events),
            Self::V0_1(b) => v0_1::evaluate(b, store, events),
        }
    }

    /// Calls `summarize` of rule `rule` for `window` (start and end, ms) over the packed
    /// `events`.
    pub(super) fn summarize(
        &self,
        store: &mut Store<RuleState>,
        rule: u32,
        window: (i64, i64),
        events: &mut Batch<'_>,
    ) -> wasmtime::Result<Vec<ReturnedAlert>> {
        match self {
            Self::V0_4(b) => v0_4::summarize(b, store, rule, window, events),
            Self::V0_3(b) => v0_3::summarize(b, store, rule, window, events),
            Self::V0_2(b) => v0_2::summarize(b, store, rule, window, events),
            Self::V0_1(b) => v0_1::summarize(b, store, rule, window, events),
        }
    }
}
