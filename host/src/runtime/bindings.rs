//! The generated bindings of the `detect:rule` world, kept private to the runtime; the rest
//! of the host sees the curated types of [`crate::events`] and [`crate::rules`].

use std::time::Duration;

use crate::events::{Field, for_each_field};
use crate::rules::{EventSource, Indicator, Operator, RuleMetadata, Severity};

mod generated {
    wasmtime::component::bindgen!({
        world: "rule",
        path: "../wit/v0.1.0",
    });
}

pub(crate) use generated::detect::rule::types as wit;
pub(crate) use generated::{Rule as RuleBindings, RulePre as RuleBindingsPre};

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
for_each_field!(field_conversions);

impl From<wit::RuleMetadata> for RuleMetadata {
    fn from(m: wit::RuleMetadata) -> Self {
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
                    wit::EventSource::DefenderDeviceProcessEvents => EventSource::DefenderDeviceProcessEvents,
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
