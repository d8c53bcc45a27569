//! Rule test cases: events and the matches and alerts a rule must give for them, kept
//! next to the rule's source as JSON and run through the real component by `rulehost test`.
//!
//! ```json
//! {
//!   "cases": [
//!     {
//!       "name": "whoami started by IIS",
//!       "window": "1h",
//!       "events": [
//!         {"Timestamp": "2024-05-01T10:00:00Z", "DeviceName": "web01", "FileName": "cmd.exe",
//!          "ProcessCommandLine": "cmd /c whoami", "InitiatingProcessFileName": "w3wp.exe"}
//!       ],
//!       "expect": {
//!         "matches": [0],
//!         "alerts": [{"DeviceName": "web01", "MatchCount": 1}]
//!       }
//!     }
//!   ]
//! }
//! ```
//!
//! `events` are Defender `DeviceProcessEvents` rows (any shape `eval` reads as JSON works).
//! `expect.matches` lists the indices of the events that must match, and no other may;
//! `expect.alerts` lists the alerts in order, each with the columns to compare (the others
//! are not compared); there must be exactly as many alerts. Either may be left out.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::alerts::{Alert, Match, WindowSpec};
use crate::eval::{self, EvalOptions};
use crate::events::{Origin, Position, Record, read_json_record};
use crate::runtime::CompiledRule;
use crate::sinks::{self as output, Sink};

/// A file of cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The cases, run in order.
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case shows.
    pub name: String,
    /// The alert window (`1h` by default, `all`, ...).
    #[serde(default)]
    pub window: Option<String>,
    /// The events, as Defender rows.
    pub events: Vec<Map<String, Value>>,
    /// What the rule must give.
    pub expect: Expect,
}

/// A case's expectations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The indices of the events that match.
    #[serde(default)]
    pub matches: Option<Vec<usize>>,
    /// The alerts, each with the columns to compare.
    #[serde(default)]
    pub alerts: Option<Vec<Map<String, Value>>>,
}

/// A case file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a case file.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl CaseFile {
    /// Reads a case file.
    pub fn load(path: &std::path::Path) -> Result<Self, CaseError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| CaseError::Io { path: path.display().to_string(), source })?;
        serde_json::from_str(&text)
            .map_err(|e| CaseError::Invalid { path: path.display().to_string(), reason: e.to_string() })
    }
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// What differs from the expectation; empty when the case passed.
    pub differences: Vec<String>,
}

impl CaseResult {
    /// Whether the rule gave what the case expects.
    pub fn passed(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Collects what an evaluation writes.
#[derive(Debug, Default)]
struct Collected {
    matches: Vec<usize>,
    alerts: Vec<Value>,
}

impl Sink for Collected {
    fn alert(&mut self, alert: &Alert) -> std::io::Result<()> {
        self.alerts.push(output::alert_json(alert));
        Ok(())
    }

    fn matched(&mut self, matched: &Match<'_>) -> std::io::Result<()> {
        self.matches.push(matched.event.origin().position.number() as usize - 1);
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs every case of `file` (named `source` in messages) through `rule`.
pub fn run(rule: &Arc<CompiledRule>, file: &CaseFile, source: &str) -> Vec<CaseResult> {
    file.cases.iter().map(|case| run_case(rule, case, source)).collect()
}

fn run_case(rule: &Arc<CompiledRule>, case: &Case, source: &str) -> CaseResult {
    let mut differences = Vec::new();
    let window = match case.window.as_deref().unwrap_or("1h").parse::<WindowSpec>() {
        Ok(window) => window,
        Err(e) => return CaseResult { name: case.name.clone(), differences: vec![format!("window: {e}")] },
    };
    let file: Arc<str> = format!("{source}#{}", case.name).into();
    let records: Vec<Record> = case
        .events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let origin = Origin { file: file.clone(), position: Position::Record(i as u64 + 1) };
            read_json_record(event.clone(), origin)
        })
        .collect();
    for record in &records {
        match record {
            Record::Event(_) => {}
            Record::Skipped(s) => differences.push(format!(
                "event {} is not a process event ({})",
                s.origin.position.number() - 1,
                s.kind
            )),
            Record::Rejected(r) => {
                differences.push(format!("event {}: {}", r.origin.position.number() - 1, r.reason))
            }
        }
    }
    if !differences.is_empty() {
        return CaseResult { name: case.name.clone(), differences };
    }
    let rules = std::slice::from_ref(rule);
    let mut failures = Vec::new();
    let mut note = |d: eval::Diagnostic<'_>| {
        if let eval::Diagnostic::RuleFailed { error, .. } = d {
            failures.push(format!("the rule failed: {error}"));
        }
    };
    let options = |matches_only| EvalOptions { window, matches_only, strict: true, ..EvalOptions::default() };
    let mut matched = Collected::default();
    let mut alerted = Collected::default();
    let runs = eval::evaluate_records_with(
        rules,
        records.iter().map(clone_record),
        &options(true),
        &mut matched,
        &mut note,
    )
    .and_then(|_| {
        eval::evaluate_records_with(rules, records.into_iter(), &options(false), &mut alerted, &mut note)
    });
    if let Err(e) = runs {
        differences.push(format!("evaluation failed: {e}"));
    }
    differences.extend(failures);
    if let Some(expected) = &case.expect.matches
        && *expected != matched.matches
    {
        differences.push(format!("matches: expected {expected:?}, got {:?}", matched.matches));
    }
    if let Some(expected) = &case.expect.alerts {
        compare_alerts(expected, &alerted.alerts, &mut differences);
    }
    CaseResult { name: case.name.clone(), differences }
}

fn clone_record(record: &Record) -> Record {
    match record {
        Record::Event(e) => Record::Event(e.clone()),
        Record::Skipped(s) => Record::Skipped(s.clone()),
        Record::Rejected(r) => Record::Rejected(r.clone()),
    }
}

fn compare_alerts(expected: &[Map<String, Value>], actual: &[Value], differences: &mut Vec<String>) {
    if expected.len() != actual.len() {
        differences.push(format!("alerts: expected {}, got {}", expected.len(), actual.len()));
    }
    for (i, (want, got)) in expected.iter().zip(actual).enumerate() {
        for (column, value) in want {
            match got.get(column) {
                Some(actual) if actual == value => {}
                Some(actual) => {
                    differences.push(format!("alert {i}: {column}: expected {value}, got {actual}"))
                }
                None => differences
                    .push(format!("alert {i}: {column}: expected {value}, but the alert has no such column")),
            }
        }
    }
}
