//! `rulehost new`: a rule crate that builds with `make rules` as it is, with the SDK wired
//! in, placeholder metadata, unit tests and test cases (one positive, one negative).

use std::path::{Path, PathBuf};

/// A crate that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a crate name.
    #[error("{0:?}: a rule name is lower-case letters, digits and hyphens, starting with a letter")]
    BadName(String),
    /// Something is in the way.
    #[error("{0}: exists already")]
    Exists(String),
    /// Writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Writes the crate `name` under `parent` and returns the files written.
pub fn new_rule(parent: &Path, name: &str) -> Result<Vec<PathBuf>, ScaffoldError> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.display().to_string()));
    }
    let files = [
        (dir.join("Cargo.toml"), CARGO_TOML.replace("{{name}}", name)),
        (dir.join("src/lib.rs"), LIB_RS.replace("{{name}}", name).replace("{{Type}}", &type_name(name))),
        (dir.join("cases.json"), CASES_JSON.to_owned()),
    ];
    for (path, text) in &files {
        let io = |source| ScaffoldError::Io { path: path.display().to_string(), source };
        std::fs::create_dir_all(path.parent().expect("a file in a folder")).map_err(io)?;
        std::fs::write(path, text)
            .map_err(|source| ScaffoldError::Io { path: path.display().to_string(), source })?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

/// `my-rule` -> `MyRule`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

const CARGO_TOML: &str = r#"[package]
name = "{{name}}"
description = "TODO: what the rule detects, in one line"
version = "0.1.0"
edition.workspace = true
rust-version.workspace = true
license.workspace = true
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
rulehost-sdk.workspace = true

[lints]
workspace = true
"#;

const LIB_RS: &str = r#"//! TODO: the rule's name, where it comes from, and its KQL:
//!
//! ```kql
//! DeviceProcessEvents
//! | where InitiatingProcessFileName in ("w3wp.exe") and FileName in~ ("cmd.exe")
//! | summarize make_set(ProcessCommandLine, 1000) by DeviceId, DeviceName
//! ```

use rulehost_sdk::aggregate::{group_by, make_set};
use rulehost_sdk::{Alert, Event, EventSource, Field, Indicator, Metadata, Operator, Rule, Severity, Window, kql};

/// Parent processes to watch, matched with `in` (case-sensitive).
const PARENTS: &[&str] = &["w3wp.exe"];
/// Child processes, matched with `in~`.
const CHILDREN: &[&str] = &["cmd.exe"];

/// The rule.
#[derive(Debug)]
pub struct {{Type}};

impl Rule for {{Type}} {
    const METADATA: Metadata = Metadata {
        id: "{{name}}",
        version: env!("CARGO_PKG_VERSION"),
        title: "TODO: a one-line title",
        description: "TODO: what the rule detects and why it matters.",
        severity: Severity::Medium,
        tactics: &["Execution"],
        techniques: &["T1059"],
        coverage: &[
            EventSource::DefenderDeviceProcessEvents,
            EventSource::SysmonProcessCreate,
            EventSource::SecurityProcessCreate,
        ],
        reads: &[Field::InitiatingProcessFileName, Field::FileName],
        summary_reads: &[Field::DeviceId, Field::DeviceName, Field::ProcessCommandLine],
        indicators: &[
            Indicator { field: Field::InitiatingProcessFileName, operator: Operator::InCs, values: PARENTS },
            Indicator { field: Field::FileName, operator: Operator::InCi, values: CHILDREN },
        ],
        query_period_seconds: 3600,
        query_frequency_seconds: 3600,
    };

    fn matches(event: &Event<'_>) -> bool {
        kql::in_cs(event.initiating_process_file_name(), PARENTS) && kql::in_ci(event.file_name(), CHILDREN)
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        group_by(matched, |e| (e.device_id(), e.device_name()))
            .into_iter()
            .map(|group| {
                let first = &matched[group[0]];
                Alert::new(group.iter().copied())
                    .text("DeviceId", first.device_id())
                    .text("DeviceName", first.device_name())
                    .texts("set_ProcessCommandLine", make_set(matched, &group, Field::ProcessCommandLine, 1000))
            })
            .collect()
    }
}

rulehost_sdk::export_rule!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;
    use rulehost_sdk::Batch;

    fn matches(parent: &str, file: &str) -> bool {
        let batch = Batch::from_rows(&[&[(Field::InitiatingProcessFileName, parent), (Field::FileName, file)]]);
        {{Type}}::matches(&batch.event(0))
    }

    #[test]
    fn a_shell_under_the_web_server_matches() {
        assert!(matches("w3wp.exe", "CMD.EXE"));
    }

    #[test]
    fn other_parents_do_not() {
        assert!(!matches("explorer.exe", "cmd.exe"));
        assert!(!matches("W3WP.EXE", "cmd.exe"), "`in` is case-sensitive");
    }
}
"#;

const CASES_JSON: &str = r#"{
  "cases": [
    {
      "name": "a shell started by the web server raises an alert",
      "events": [
        {
          "Timestamp": "2024-05-01T10:00:00Z",
          "DeviceId": "d1",
          "DeviceName": "web01.contoso.com",
          "FileName": "cmd.exe",
          "ProcessCommandLine": "cmd.exe /c whoami",
          "InitiatingProcessFileName": "w3wp.exe",
          "ReportId": 1
        }
      ],
      "expect": {
        "matches": [0],
        "alerts": [{"DeviceName": "web01.contoso.com", "set_ProcessCommandLine": ["cmd.exe /c whoami"], "MatchCount": 1}]
      }
    },
    {
      "name": "a shell started by explorer is not the rule's business",
      "events": [
        {
          "Timestamp": "2024-05-01T10:00:00Z",
          "DeviceId": "d1",
          "DeviceName": "web01.contoso.com",
          "FileName": "cmd.exe",
          "ProcessCommandLine": "cmd.exe /c whoami",
          "InitiatingProcessFileName": "explorer.exe",
          "ReportId": 2
        }
      ],
      "expect": {"matches": [], "alerts": []}
    }
  ]
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_crate_names() {
        assert_eq!(type_name("web-shell-recon"), "WebShellRecon");
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "Rule", "1rule", "my_rule", "rule-", "ru le"] {
            assert!(matches!(new_rule(dir.path(), bad), Err(ScaffoldError::BadName(_))), "{bad:?}");
        }
        let written = new_rule(dir.path(), "my-rule").unwrap();
        assert_eq!(written.len(), 3);
        assert!(matches!(new_rule(dir.path(), "my-rule"), Err(ScaffoldError::Exists(_))));
    }
}
