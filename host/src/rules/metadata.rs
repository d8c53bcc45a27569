//! What a rule says about itself, as the host sees it.

use std::fmt;
use std::time::Duration;

use crate::events::Field;

/// A rule's metadata, read from its `metadata` export when it is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMetadata {
    /// Stable id.
    pub id: String,
    /// Version (semantic versioning).
    pub version: String,
    /// One-line title.
    pub title: String,
    /// What it detects.
    pub description: String,
    /// How serious its alerts are.
    pub severity: Severity,
    /// MITRE ATT&CK tactics.
    pub tactics: Vec<String>,
    /// MITRE ATT&CK technique ids.
    pub techniques: Vec<String>,
    /// The logs it covers.
    pub coverage: Vec<EventSource>,
    /// The fields `evaluate` reads.
    pub reads: Vec<Field>,
    /// The fields `summarize` reads.
    pub summary_reads: Vec<Field>,
    /// The conditions it tests.
    pub indicators: Vec<Indicator>,
    /// How far back one run looks.
    pub query_period: Duration,
    /// How often it runs.
    pub query_frequency: Duration,
}

/// A condition a rule tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicator {
    /// The field tested.
    pub field: Field,
    /// The KQL operator.
    pub operator: Operator,
    /// The values compared with.
    pub values: Vec<String>,
}

macro_rules! closed_vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// The name shown to people and written in outputs.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

closed_vocabulary! {
    /// How serious a rule's alerts are.
    Severity {
        /// For information only.
        Informational => "informational",
        /// Low.
        Low => "low",
        /// Medium.
        Medium => "medium",
        /// High.
        High => "high",
        /// Critical (Sigma's highest level; contract 0.3.0).
        Critical => "critical",
    }
}

closed_vocabulary! {
    /// A KQL string operator.
    Operator {
        /// `in`, case-sensitive.
        InCs => "in",
        /// `in~`, case-insensitive.
        InCi => "in~",
        /// `has`.
        Has => "has",
        /// `contains`.
        Contains => "contains",
        /// `startswith`.
        Startswith => "startswith",
        /// `endswith` (contract 0.3.0).
        Endswith => "endswith",
        /// `=~`: equal, case-insensitive (contract 0.3.0).
        EqualsCi => "equals-ci",
        /// A Sigma wildcard pattern (contract 0.3.0).
        Wildcard => "wildcard",
        /// A regular expression (contract 0.3.0).
        Regex => "regex",
    }
}

closed_vocabulary! {
    /// A log a rule covers.
    EventSource {
        /// Defender `DeviceProcessEvents`.
        DefenderDeviceProcessEvents => "Defender DeviceProcessEvents",
        /// Sysmon event 1.
        SysmonProcessCreate => "Sysmon 1 (process creation)",
        /// Security-Auditing 4688.
        SecurityProcessCreate => "Security 4688 (new process)",
    }
}
