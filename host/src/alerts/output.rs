//! Where alerts and matches go: JSON lines for machines, a table for people.

use std::io::{self, Write};
use std::str::FromStr;

use serde_json::{Map, Value, json};

use super::{Alert, Match};
use crate::events::{Field, Position, time};
use crate::runtime::AlertValue;

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// One JSON object per line.
    Jsonl,
    /// An aligned text table.
    Table,
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" => Ok(OutputFormat::Jsonl),
            "table" => Ok(OutputFormat::Table),
            other => Err(format!("unknown output format {other:?} (jsonl or table)")),
        }
    }
}

/// A sink for what the evaluator finds.
pub trait Output {
    /// Writes one alert.
    fn alert(&mut self, alert: &Alert) -> io::Result<()>;
    /// Writes one match.
    fn matched(&mut self, matched: &Match<'_>) -> io::Result<()>;
    /// Writes whatever is buffered; called once at the end.
    fn finish(&mut self) -> io::Result<()>;
}

/// The JSON object of an alert: the rule, the window, the rule's columns, then the
/// engine's columns about the matched events.
pub fn alert_json(alert: &Alert) -> Value {
    let metadata = alert.rule.metadata();
    let mut object = Map::new();
    object.insert("RuleId".into(), metadata.id.clone().into());
    object.insert("RuleTitle".into(), metadata.title.clone().into());
    object.insert("RuleVersion".into(), metadata.version.clone().into());
    object.insert("RuleDigest".into(), alert.rule.digest().as_str().into());
    object.insert("Severity".into(), metadata.severity.name().into());
    object.insert("WindowStart".into(), time::format_ms(alert.window_start_ms).into());
    object.insert("WindowEnd".into(), time::format_ms(alert.window_end_ms).into());
    for (name, value) in &alert.columns {
        let value = match value {
            AlertValue::Text(s) => Value::from(s.as_str()),
            AlertValue::Texts(v) => Value::from(v.clone()),
            AlertValue::Number(n) => Value::from(*n),
        };
        object.insert(name.clone(), value);
    }
    object.insert("MatchCount".into(), alert.match_count.into());
    object.insert("FirstTimestamp".into(), alert.first_timestamp.clone().into());
    object.insert("LastTimestamp".into(), alert.last_timestamp.clone().into());
    object.insert("ReportIds".into(), alert.report_ids.clone().into());
    Value::Object(object)
}

/// The JSON object of a match: the rule, where the event was read, and the normalized
/// event with its `DeviceProcessEvents` columns.
pub fn match_json(matched: &Match<'_>) -> Value {
    let event = matched.event;
    let origin = event.origin();
    let mut source = Map::new();
    source.insert("format".into(), event.get(Field::SourceFormat).into());
    source.insert("file".into(), origin.file.as_ref().into());
    match origin.position {
        Position::Line(n) => source.insert("line".into(), n.into()),
        Position::Record(n) => source.insert("record".into(), n.into()),
    };
    let columns: Map<String, Value> = Field::ALL
        .iter()
        .filter(|f| !f.is_source())
        .map(|&f| (f.name().to_owned(), Value::from(event.get(f))))
        .collect();
    let metadata = matched.rule.metadata();
    json!({
        "rule": metadata.id,
        "rule_version": metadata.version,
        "rule_digest": matched.rule.digest().as_str(),
        "source": source,
        "event": columns,
    })
}

/// JSON lines, written as they come.
#[derive(Debug)]
pub struct JsonLines<W: Write> {
    out: W,
}

impl<W: Write> JsonLines<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }

    fn line(&mut self, value: &Value) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")
    }
}

impl<W: Write> Output for JsonLines<W> {
    fn alert(&mut self, alert: &Alert) -> io::Result<()> {
        self.line(&alert_json(alert))
    }

    fn matched(&mut self, matched: &Match<'_>) -> io::Result<()> {
        self.line(&match_json(matched))
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The widest a table cell gets before it is cut with `…`.
const MAX_CELL_WIDTH: usize = 60;
/// The columns of a match in the table.
const MATCH_COLUMNS: &[Field] = &[
    Field::Timestamp,
    Field::DeviceName,
    Field::InitiatingProcessParentFileName,
    Field::InitiatingProcessFileName,
    Field::FileName,
    Field::ProcessCommandLine,
];

/// An aligned text table, written at the end (column widths need every row).
#[derive(Debug)]
pub struct Table<W: Write> {
    out: W,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl<W: Write> Table<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        Self { out, header: Vec::new(), rows: Vec::new() }
    }

    fn row(&mut self, header: Vec<String>, row: Vec<String>) {
        if self.header.is_empty() {
            self.header = header;
        }
        self.rows.push(row);
    }
}

impl<W: Write> Output for Table<W> {
    fn alert(&mut self, alert: &Alert) -> io::Result<()> {
        let mut header: Vec<String> = ["WindowStart", "Severity", "Rule"].map(String::from).to_vec();
        let mut row = vec![
            time::format_ms(alert.window_start_ms),
            alert.rule.metadata().severity.to_string(),
            alert.rule.metadata().title.clone(),
        ];
        for (name, value) in &alert.columns {
            header.push(name.clone());
            row.push(match value {
                AlertValue::Text(s) => s.clone(),
                AlertValue::Texts(v) => v.join(" | "),
                AlertValue::Number(n) => n.to_string(),
            });
        }
        header.push("MatchCount".into());
        row.push(alert.match_count.to_string());
        self.row(header, row);
        Ok(())
    }

    fn matched(&mut self, matched: &Match<'_>) -> io::Result<()> {
        let mut header = vec!["Rule".to_owned()];
        header.extend(MATCH_COLUMNS.iter().map(|f| f.name().to_owned()));
        header.push("Source".into());
        let mut row = vec![matched.rule.metadata().title.clone()];
        row.extend(MATCH_COLUMNS.iter().map(|&f| matched.event.get(f).to_owned()));
        row.push(matched.event.origin().to_string());
        self.row(header, row);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.rows.is_empty() {
            return self.out.flush();
        }
        let cut = |cell: &str| -> String {
            let cell = cell.replace(['\n', '\r', '\t'], " ");
            if cell.chars().count() <= MAX_CELL_WIDTH {
                cell
            } else {
                let mut short: String = cell.chars().take(MAX_CELL_WIDTH - 1).collect();
                short.push('…');
                short
            }
        };
        let header: Vec<String> = self.header.iter().map(|h| cut(h)).collect();
        let rows: Vec<Vec<String>> = self.rows.iter().map(|r| r.iter().map(|c| cut(c)).collect()).collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .filter_map(|r| r.get(i))
                    .chain(std::iter::once(&header[i]))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for line in std::iter::once(&header).chain(rows.iter()) {
            let cells: Vec<String> =
                line.iter().zip(&widths).map(|(cell, &width)| format!("{cell:<width$}")).collect();
            writeln!(self.out, "{}", cells.join("  ").trim_end())?;
        }
        self.out.flush()
    }
}
