//! The contract's data as the host holds it: what a rule says about itself (its
//! metadata, read from its `metadata` export), and the bounds the host puts on it. The
//! runtime lifts it from the guest; the rest of the host reads it.

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

/// The bounds a rule's metadata must keep, checked when the rule is loaded. They are far
/// above what a real rule declares (the SigmaHQ catalog's largest values are in the
/// comments) and low enough that a rule cannot make the host hold or print without bound.
pub mod bounds {
    /// Bytes of the id (Sigma ids are 36-byte UUIDs).
    pub const ID_BYTES: usize = 128;
    /// Bytes of the version.
    pub const VERSION_BYTES: usize = 64;
    /// Bytes of the title (the catalog's longest: 97).
    pub const TITLE_BYTES: usize = 512;
    /// Bytes of the description (the catalog's longest: 1,426).
    pub const DESCRIPTION_BYTES: usize = 16 << 10;
    /// Entries of `tactics`, and of `techniques` (the catalog's most: 6 and 14).
    pub const TAGS: usize = 64;
    /// Bytes of one tactic or technique.
    pub const TAG_BYTES: usize = 64;
    /// Indicators of one rule.
    pub const INDICATORS: usize = 1024;
    /// Values of all the indicators of one rule.
    pub const INDICATOR_VALUES: usize = 16 << 10;
    /// Bytes of one indicator value.
    pub const INDICATOR_VALUE_BYTES: usize = 4 << 10;
    /// Rules in one pack (the catalog has 1,415 process-creation rules, SigmaHQ ~3,500 in
    /// all).
    pub const PACK_RULES: usize = 20_000;
}

/// Metadata that breaks the contract or its bounds: what is wrong, for a message that
/// names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MetadataProblem(pub String);

impl RuleMetadata {
    /// Checks what the contract and [`bounds`] ask of metadata: an id and a version, fields
    /// each listed once (so never more than the contract has), and every string and list
    /// within its bound. Control characters are refused where a name is printed on one line
    /// of a terminal or a log.
    pub fn validate(&self) -> Result<(), MetadataProblem> {
        let problem = |text: String| Err(MetadataProblem(text));
        validate_naming(&Naming {
            id: &self.id,
            version: &self.version,
            title: &self.title,
            description: &self.description,
            tactics: &self.tactics,
            techniques: &self.techniques,
        })?;
        once_each("coverage", &self.coverage)?;
        if self.reads.is_empty() {
            return problem("reads no field".into());
        }
        once_each("reads", &self.reads)?;
        once_each("summary-reads", &self.summary_reads)?;
        if self.indicators.len() > bounds::INDICATORS {
            return problem(format!(
                "{} indicators, more than the limit of {}",
                self.indicators.len(),
                bounds::INDICATORS
            ));
        }
        let values: usize = self.indicators.iter().map(|i| i.values.len()).sum();
        if values > bounds::INDICATOR_VALUES {
            return problem(format!(
                "{values} indicator values, more than the limit of {}",
                bounds::INDICATOR_VALUES
            ));
        }
        for value in self.indicators.iter().flat_map(|i| &i.values) {
            if value.len() > bounds::INDICATOR_VALUE_BYTES {
                return problem(format!(
                    "an indicator value of {} bytes, more than the limit of {}",
                    value.len(),
                    bounds::INDICATOR_VALUE_BYTES
                ));
            }
        }
        Ok(())
    }
}

/// What a rule's metadata says of it in words: what a rule compiled from elsewhere (a Sigma
/// file) is checked for before it is built into a pack.
#[derive(Debug, Clone, Copy)]
pub struct Naming<'a> {
    /// The rule's id.
    pub id: &'a str,
    /// Its version.
    pub version: &'a str,
    /// Its title, on one line.
    pub title: &'a str,
    /// Its description.
    pub description: &'a str,
    /// The ATT&CK tactics it names.
    pub tactics: &'a [String],
    /// The ATT&CK techniques it names.
    pub techniques: &'a [String],
}

/// Checks `naming` as [`RuleMetadata::validate`] does: an id and a version, and every string
/// and list within its bound, without control characters where a name is printed on one line.
pub fn validate_naming(naming: &Naming<'_>) -> Result<(), MetadataProblem> {
    let problem = |text: String| Err(MetadataProblem(text));
    text("id", naming.id, bounds::ID_BYTES, Lines::One)?;
    if naming.id.trim().is_empty() {
        return problem("empty id".into());
    }
    text("version", naming.version, bounds::VERSION_BYTES, Lines::One)?;
    if naming.version.trim().is_empty() {
        return problem("empty version".into());
    }
    text("title", naming.title, bounds::TITLE_BYTES, Lines::One)?;
    text("description", naming.description, bounds::DESCRIPTION_BYTES, Lines::Many)?;
    for (name, tags) in [("tactics", naming.tactics), ("techniques", naming.techniques)] {
        if tags.len() > bounds::TAGS {
            return problem(format!("{} {name}, more than the limit of {}", tags.len(), bounds::TAGS));
        }
        for tag in tags.iter() {
            text(name, tag, bounds::TAG_BYTES, Lines::One)?;
        }
    }
    Ok(())
}

/// Whether a text may span lines.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lines {
    One,
    Many,
}

fn text(name: &str, value: &str, limit: usize, lines: Lines) -> Result<(), MetadataProblem> {
    if value.len() > limit {
        return Err(MetadataProblem(format!(
            "{name} of {} bytes, more than the limit of {limit}",
            value.len()
        )));
    }
    let allowed = |c: char| lines == Lines::Many && matches!(c, '\n' | '\t' | '\r');
    if let Some(c) = value.chars().find(|&c| c.is_control() && !allowed(c)) {
        return Err(MetadataProblem(format!("{name} holds the control character {:?}", c)));
    }
    Ok(())
}

fn once_each<T: Ord + Copy + fmt::Display>(name: &str, items: &[T]) -> Result<(), MetadataProblem> {
    let mut seen: Vec<T> = items.to_vec();
    seen.sort_unstable();
    if let Some(twice) = seen.windows(2).find(|w| w[0] == w[1]) {
        return Err(MetadataProblem(format!(
            "{name} lists {} more than once ({} entries)",
            twice[0],
            items.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sound() -> RuleMetadata {
        RuleMetadata {
            id: "rule-1".into(),
            version: "1.0.0".into(),
            title: "A rule".into(),
            description: "What it does.\nOn two lines.".into(),
            severity: Severity::High,
            tactics: vec!["Execution".into()],
            techniques: vec!["T1059".into()],
            coverage: vec![EventSource::SysmonProcessCreate],
            reads: vec![Field::ProcessCommandLine, Field::DeviceName],
            summary_reads: vec![Field::DeviceName],
            indicators: vec![Indicator {
                field: Field::ProcessCommandLine,
                operator: Operator::Has,
                values: vec!["whoami".into()],
            }],
            query_period: Duration::from_secs(3600),
            query_frequency: Duration::from_secs(3600),
        }
    }

    fn refused(change: impl FnOnce(&mut RuleMetadata)) -> String {
        let mut m = sound();
        change(&mut m);
        m.validate().expect_err("refused").0
    }

    #[test]
    fn sound_metadata_passes() {
        assert_eq!(sound().validate(), Ok(()));
    }

    #[test]
    fn each_bound_is_enforced_and_named() {
        let long = |n: usize| "x".repeat(n);
        let cases: Vec<(String, &str)> = vec![
            (refused(|m| m.reads = vec![Field::ProcessCommandLine; 1_000_000]), "reads lists"),
            (refused(|m| m.summary_reads.push(Field::DeviceName)), "summary-reads lists DeviceName"),
            (refused(|m| m.coverage.push(EventSource::SysmonProcessCreate)), "coverage lists"),
            (refused(|m| m.reads.clear()), "reads no field"),
            (refused(|m| m.id = long(bounds::ID_BYTES + 1)), "id of 129 bytes"),
            (refused(|m| m.id = " ".into()), "empty id"),
            (refused(|m| m.id = "a\u{1b}[2J".into()), "id holds the control character"),
            (refused(|m| m.version = long(bounds::VERSION_BYTES + 1)), "version of 65 bytes"),
            (refused(|m| m.version = String::new()), "empty version"),
            (refused(|m| m.title = "two\nlines".into()), "title holds the control character '\\n'"),
            (refused(|m| m.title = long(bounds::TITLE_BYTES + 1)), "title of 513 bytes"),
            (refused(|m| m.description = long(bounds::DESCRIPTION_BYTES + 1)), "description of 16385"),
            (refused(|m| m.tactics = vec![String::new(); bounds::TAGS + 1]), "65 tactics"),
            (refused(|m| m.techniques = vec![long(bounds::TAG_BYTES + 1)]), "techniques of 65 bytes"),
            (
                refused(|m| m.indicators = vec![m.indicators[0].clone(); bounds::INDICATORS + 1]),
                "1025 indicators",
            ),
            (
                refused(|m| m.indicators[0].values = vec![String::new(); bounds::INDICATOR_VALUES + 1]),
                "16385 indicator values",
            ),
            (
                refused(|m| m.indicators[0].values = vec![long(bounds::INDICATOR_VALUE_BYTES + 1)]),
                "indicator value of 4097 bytes",
            ),
        ];
        for (problem, wanted) in cases {
            assert!(problem.contains(wanted), "{problem:?} should say {wanted:?}");
        }
    }

    #[test]
    fn every_bound_admits_its_limit() {
        let mut m = sound();
        m.id = "i".repeat(bounds::ID_BYTES);
        m.title = "t".repeat(bounds::TITLE_BYTES);
        m.description = "d".repeat(bounds::DESCRIPTION_BYTES);
        m.tactics = vec!["t".repeat(bounds::TAG_BYTES); bounds::TAGS];
        m.reads = Field::ALL.to_vec();
        assert_eq!(m.validate(), Ok(()));
    }
}
