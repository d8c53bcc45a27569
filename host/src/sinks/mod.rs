//! Where alerts and matches go: JSON lines for machines, a table for people.

pub mod kafka;

use std::io::{self, Write};
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::alerts::{Alert, Match};
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

/// Where the pipeline writes what it finds: alerts, or every match. A sink is given what
/// it writes in order, from one thread; a new one (a Kafka producer, a SIEM's API) is one
/// more implementation of these four calls.
pub trait Sink {
    /// Writes one alert.
    fn alert(&mut self, alert: &Alert) -> io::Result<()>;
    /// Writes one match.
    fn matched(&mut self, matched: &Match<'_>) -> io::Result<()>;
    /// Writes whatever is buffered; called once at the end.
    fn finish(&mut self) -> io::Result<()>;

    /// Pushes what was written so far to its reader (a live run calls it after every
    /// batch); outputs that can only write at the end keep it a no-op.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
    if let Some(part) = alert.window_part {
        object.insert("WindowPart".into(), part.into());
    }
    if alert.late {
        object.insert("Late".into(), true.into());
    }
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

/// The alert columns [`fit_json`] never cuts: the rule, the window and the engine's counts,
/// each short.
pub const UNCUT_ALERT_COLUMNS: [&str; 11] = [
    "RuleId",
    "RuleTitle",
    "RuleVersion",
    "RuleDigest",
    "Severity",
    "WindowStart",
    "WindowEnd",
    "WindowPart",
    "Late",
    "FirstTimestamp",
    "LastTimestamp",
];

/// The members of a match's record ([`MatchRecord`]) [`fit_json`] never cuts: the rule and
/// where the event was read.
pub const UNCUT_MATCH_MEMBERS: [&str; 4] = ["rule", "rule_version", "rule_digest", "source"];

/// Texts [`fit_json`] cuts no shorter than this.
pub const SHORTEST_CUT_TEXT: usize = 256;

/// Cuts the JSON `object` (an alert's, [`alert_json`], or a match's) until it serializes to
/// at most `max_bytes`, for a sink that refuses larger messages (a Kafka topic: 1 MB by
/// default); its members named in `uncut` are left whole. The list that takes the most
/// bytes (an alert's `ReportIds`, or a rule's set) is cut to its first half, again until it
/// fits; when no list has two values left, the longest text (in lists and objects too, a
/// match's event) is cut to what it must lose, down to 256 bytes, ending with the mark of
/// its whole value ([`crate::events::shortened`]), then the next. Each list cut is named in
/// `Cut` with how many values it had. Whether anything was cut; an object that cannot be
/// cut to fit is left as far as it was cut.
pub fn fit_json(object: &mut Map<String, Value>, max_bytes: usize, uncut: &[&str]) -> bool {
    let mut cut: Map<String, Value> = Map::new();
    let mut any = false;
    loop {
        let size = serde_json::to_vec(&*object).map_or(usize::MAX, |bytes| bytes.len());
        let cut_size = serde_json::to_vec(&cut).map_or(0, |bytes| bytes.len() + "\"Cut\":,".len());
        let size = size.saturating_add(if cut.is_empty() { 0 } else { cut_size });
        if size <= max_bytes {
            break;
        }
        let cuttable = |name: &String| !uncut.contains(&name.as_str()) && name != "Cut";
        let text_bytes = |value: &Value| value.as_str().map_or(8, |s| s.len() + 3);
        let longest_list = object
            .iter()
            .filter(|(name, value)| cuttable(name) && value.as_array().is_some_and(|list| list.len() > 1))
            .max_by_key(|(_, value)| {
                value.as_array().map_or(0, |list| list.iter().map(text_bytes).sum::<usize>())
            })
            .map(|(name, _)| name.clone());
        if let Some(name) = longest_list {
            let Some(Value::Array(list)) = object.get_mut(&name) else { unreachable!("a list") };
            cut.entry(name).or_insert_with(|| list.len().into());
            list.truncate(list.len() / 2);
            any = true;
            continue;
        }
        let mut longest: Option<&mut String> = None;
        for (_, value) in object.iter_mut().filter(|(name, _)| cuttable(name)) {
            longest_text(value, &mut longest);
        }
        let Some(text) = longest else { break };
        // Its mark (a few dozen bytes) may add to what it keeps: cut at least that much more.
        let keep = text.len().saturating_sub(size - max_bytes).max(SHORTEST_CUT_TEXT);
        let shorter = crate::events::shortened(text, keep).into_owned();
        if shorter.len() >= text.len() {
            // Nothing more to cut: stop rather than cut the same text again and again.
            break;
        }
        *text = shorter;
        any = true;
    }
    if !cut.is_empty() {
        object.insert("Cut".into(), Value::Object(cut));
    }
    any
}

/// The longest text in `value` (itself, or within its lists and objects) longer than
/// [`SHORTEST_CUT_TEXT`], if longer than `longest`, into `longest`.
fn longest_text<'a>(value: &'a mut Value, longest: &mut Option<&'a mut String>) {
    match value {
        Value::String(s)
            if s.len() > SHORTEST_CUT_TEXT && longest.as_ref().is_none_or(|l| s.len() > l.len()) =>
        {
            *longest = Some(s)
        }
        Value::Array(list) => list.iter_mut().for_each(|v| longest_text(v, longest)),
        Value::Object(members) => members.values_mut().for_each(|v| longest_text(v, longest)),
        _ => {}
    }
}

/// A match as its JSON object says it: the rule, where the event was read, and the
/// normalized event with its `DeviceProcessEvents` columns. Serialized from the event's own
/// text, without a `Value` of some fifty owned strings per match (a rule set such as the
/// Sigma catalog matches most process creations, and building those took about a third of
/// a `--matches` run over real records).
#[derive(Debug, serde::Serialize)]
pub struct MatchRecord<'a> {
    #[serde(flatten)]
    head: MatchHead<'a>,
    event: EventColumns<'a>,
}

/// A match's record but its event: the rule and where the event was read.
#[derive(Debug, serde::Serialize)]
struct MatchHead<'a> {
    rule: &'a str,
    rule_version: &'a str,
    rule_digest: &'a str,
    source: MatchSource<'a>,
}

#[derive(Debug, serde::Serialize)]
struct MatchSource<'a> {
    format: &'a str,
    file: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<u64>,
}

/// An event's columns (every field but the source's), in the contract's order.
#[derive(Debug)]
struct EventColumns<'a>(&'a crate::events::ProcessEvent);

impl serde::Serialize for EventColumns<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for &field in Field::ALL.iter().filter(|f| !f.is_source()) {
            map.serialize_entry(field.name(), self.0.get(field))?;
        }
        map.end()
    }
}

impl<'a> MatchRecord<'a> {
    /// The record of `matched`.
    pub fn of(matched: &'a Match<'a>) -> Self {
        let event = matched.event;
        let origin = event.origin();
        let (line, record) = match origin.position {
            Position::Line(n) => (Some(n), None),
            Position::Record(n) => (None, Some(n)),
        };
        let metadata = matched.rule.metadata();
        MatchRecord {
            head: MatchHead {
                rule: &metadata.id,
                rule_version: &metadata.version,
                rule_digest: matched.rule.digest().as_str(),
                source: MatchSource {
                    format: event.get(Field::SourceFormat),
                    file: &origin.file,
                    line,
                    record,
                },
            },
            event: EventColumns(event),
        }
    }
}

/// JSON lines, written as they come.
#[derive(Debug)]
pub struct JsonLines<W: Write> {
    out: W,
    /// The last matched event's columns as JSON, by the event's address and reading order.
    /// The matches of one event come one after the other, one per rule: with the Sigma
    /// catalog, half of the matches of real records repeat the event before them.
    last_event: Option<((usize, u64), Vec<u8>)>,
    /// A match's line before its event, kept to be written again.
    head: Vec<u8>,
}

impl<W: Write> JsonLines<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        Self { out, last_event: None, head: Vec::new() }
    }

    fn line(&mut self, value: &impl serde::Serialize) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn alert(&mut self, alert: &Alert) -> io::Result<()> {
        self.line(&alert_json(alert))
    }

    /// Writes the bytes [`MatchRecord`] serializes to, with the event's part serialized once
    /// for the matches of one event in a row.
    fn matched(&mut self, matched: &Match<'_>) -> io::Result<()> {
        let record = MatchRecord::of(matched);
        let key = (std::ptr::from_ref(matched.event) as usize, matched.event.read_order());
        if self.last_event.as_ref().is_none_or(|(last, _)| *last != key) {
            let mut json = self.last_event.take().map(|(_, json)| json).unwrap_or_default();
            json.clear();
            serde_json::to_writer(&mut json, &record.event)?;
            self.last_event = Some((key, json));
        }
        let event = self.last_event.as_ref().map(|(_, json)| json.as_slice()).unwrap_or_default();
        self.head.clear();
        serde_json::to_writer(&mut self.head, &record.head)?;
        // `{"rule":..,"source":{..}}` without its closing brace, then the event.
        self.head.pop();
        self.out.write_all(&self.head)?;
        self.out.write_all(b",\"event\":")?;
        self.out.write_all(event)?;
        self.out.write_all(b"}\n")
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The width a column keeps whatever the terminal: a column no wider keeps its width.
const MIN_COLUMN_WIDTH: usize = 20;
/// Between columns.
const GAP: &str = "  ";
/// The columns of a match in the table.
const MATCH_COLUMNS: &[Field] = &[
    Field::Timestamp,
    Field::DeviceName,
    Field::InitiatingProcessParentFileName,
    Field::InitiatingProcessFileName,
    Field::FileName,
    Field::ProcessCommandLine,
];

/// An aligned text table, written at the end (column widths need every row). Rows of
/// another shape (rules with other columns) start a table of their own.
#[derive(Debug)]
pub struct Table<W: Write> {
    out: W,
    tables: Vec<(Vec<String>, Vec<Vec<String>>)>,
    width: Option<usize>,
    color: bool,
}

impl<W: Write> Table<W> {
    /// Writes to `out`, every value whole, without colour.
    pub fn new(out: W) -> Self {
        Self { out, tables: Vec::new(), width: None, color: false }
    }

    /// Fits the table to `width` columns (a terminal's), wrapping long values.
    #[must_use]
    pub fn fit_to(mut self, width: Option<usize>) -> Self {
        self.width = width;
        self
    }

    /// Colours the header and severities with ANSI escapes.
    #[must_use]
    pub fn colored(mut self, color: bool) -> Self {
        self.color = color;
        self
    }

    /// Adds `row` under `header`, each cell [`printable`](crate::text::printable): its text
    /// is a log's or a rule's, and the table is read on a terminal. Line breaks and tabs
    /// stay, for [`wrap`] to break the cell's lines at.
    fn row(&mut self, header: Vec<String>, row: Vec<String>) {
        let cell = |text: String| match crate::text::printable(&text, &['\n', '\r', '\t']) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(escaped) => escaped,
        };
        let (header, row): (Vec<String>, Vec<String>) =
            (header.into_iter().map(cell).collect(), row.into_iter().map(cell).collect());
        match self.tables.last_mut() {
            Some((last, rows)) if *last == header => rows.push(row),
            _ => self.tables.push((header, vec![row])),
        }
    }

    /// Column widths: each column's widest value, then, for a terminal, the widest columns
    /// narrowed one at a time until the table fits.
    fn widths(&self, header: &[String], rows: &[Vec<String>]) -> Vec<usize> {
        let mut widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .filter_map(|r| r.get(i))
                    .chain(std::iter::once(&header[i]))
                    .flat_map(|c| c.lines())
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        if let Some(limit) = self.width {
            // Short columns keep their width; the long ones share what is left, in
            // proportion to how much they would need.
            let gaps = GAP.len() * widths.len().saturating_sub(1);
            if widths.iter().sum::<usize>() + gaps > limit {
                let mut floors: Vec<usize> = widths.iter().map(|&w| w.min(MIN_COLUMN_WIDTH)).collect();
                let room = limit.saturating_sub(gaps);
                if floors.iter().sum::<usize>() > room {
                    // Too many columns even for their short widths: every one shrinks in
                    // proportion (at least 4 wide).
                    let total: usize = floors.iter().sum();
                    floors = floors.iter().map(|&f| (f * room / total.max(1)).max(4)).collect();
                }
                let spare = limit.saturating_sub(floors.iter().sum::<usize>() + gaps);
                let wanted: usize = widths.iter().zip(&floors).map(|(w, f)| w - f).sum();
                widths =
                    widths.iter().zip(&floors).map(|(&w, &f)| f + (w - f) * spare / wanted.max(1)).collect();
            }
        }
        widths
    }

    fn paint(&self, text: &str, code: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }
}

/// `text` cut into lines of at most `width` characters, at spaces where it can.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split(['\n', '\r', '\t']) {
        let mut line = String::new();
        for word in paragraph.split(' ') {
            let mut word = word.to_owned();
            loop {
                let line_len = line.chars().count();
                let word_len = word.chars().count();
                let space = usize::from(line_len > 0);
                if line_len + space + word_len <= width {
                    if space == 1 {
                        line.push(' ');
                    }
                    line.push_str(&word);
                    break;
                }
                if line_len > 0 {
                    lines.push(std::mem::take(&mut line));
                    continue;
                }
                // A word longer than the column: cut it.
                let head: String = word.chars().take(width).collect();
                word = word.chars().skip(width).collect();
                lines.push(head);
                if word.is_empty() {
                    break;
                }
            }
        }
        lines.push(line);
    }
    lines
}

impl<W: Write> Sink for Table<W> {
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
                AlertValue::Texts(v) => v.join("\n"),
                AlertValue::Number(n) => n.to_string(),
            });
        }
        header.push("MatchCount".into());
        row.push(alert.match_count.to_string());
        if let Some(part) = alert.window_part {
            header.push("WindowPart".into());
            row.push(part.to_string());
        }
        if alert.late {
            header.push("Late".into());
            row.push("late".into());
        }
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
        let tables = std::mem::take(&mut self.tables);
        for (n, (header, rows)) in tables.iter().enumerate() {
            if n > 0 {
                writeln!(self.out)?;
            }
            let widths = self.widths(header, rows);
            for (r, row) in std::iter::once(header).chain(rows.iter()).enumerate() {
                let cells: Vec<Vec<String>> =
                    row.iter().zip(&widths).map(|(cell, &w)| wrap(cell, w.max(1))).collect();
                let height = cells.iter().map(Vec::len).max().unwrap_or(1);
                for line in 0..height {
                    let mut text = String::new();
                    for (c, (cell, &width)) in cells.iter().zip(&widths).enumerate() {
                        let part = cell.get(line).map_or("", String::as_str);
                        let padded = format!("{part:<width$}");
                        let painted = if r == 0 {
                            self.paint(&padded, "1")
                        } else if header[c] == "Severity" {
                            match part {
                                "high" => self.paint(&padded, "31"),
                                "medium" => self.paint(&padded, "33"),
                                _ => padded,
                            }
                        } else {
                            padded
                        };
                        if c > 0 {
                            text.push_str(GAP);
                        }
                        text.push_str(&painted);
                    }
                    writeln!(self.out, "{}", text.trim_end())?;
                }
            }
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ProcessEvent;

    /// The real process creations of one shared EVTX file.
    fn real_events() -> Vec<ProcessEvent> {
        let name = "discovery_sysmon_1_iis_pwd_and_config_discovery_appcmd.evtx";
        let events = crate::events::shared_evtx_process_creations(name);
        assert!(events.len() > 2, "{} process creations in {name}", events.len());
        events
    }

    #[test]
    fn a_text_ending_with_a_forged_mark_is_cut_and_the_cutting_ends() {
        let forged = format!("whoami …[{} bytes, sha256:0123456789abcdef]", "9".repeat(50_000));
        let mut object = Map::new();
        object.insert("rule".into(), "r".repeat(2_000).into());
        object.insert("ProcessCommandLine".into(), forged.into());
        // Cannot fit (the rule alone is larger): cut as far as it goes, and returns.
        assert!(fit_json(&mut object, 1_000, &["rule"]));
        let kept = object["ProcessCommandLine"].as_str().unwrap();
        assert!(kept.len() <= SHORTEST_CUT_TEXT && kept.starts_with("whoami"), "{kept}");
        assert_eq!(object["rule"].as_str().unwrap().len(), 2_000);
    }

    #[test]
    fn an_alert_is_cut_to_fit_its_longest_lists_first_then_its_longest_texts() {
        let texts = |n: usize, len: usize| -> Value {
            (0..n).map(|i| format!("{i:04}{}", "x".repeat(len))).collect()
        };
        let alert = |commands: Value| -> Map<String, Value> {
            let mut object = Map::new();
            object.insert("RuleId".into(), "r".into());
            object.insert("WindowStart".into(), "2024-06-12T03:00:00Z".into());
            object.insert("DeviceName".into(), "web01".into());
            object.insert("set_ProcessCommandLine".into(), commands);
            object.insert("MatchCount".into(), 1000.into());
            object.insert("ReportIds".into(), texts(1000, 4));
            object
        };
        let size = |object: &Map<String, Value>| serde_json::to_vec(object).unwrap().len();
        // Fits: untouched.
        let mut small = alert(texts(10, 100));
        let before = small.clone();
        let fits = size(&small);
        assert!(!fit_json(&mut small, fits, &UNCUT_ALERT_COLUMNS));
        assert_eq!(small, before);
        // 1,000 command lines of 1 KB and 1,000 report ids into 100 KB: the command lines
        // halved until the report ids are the longer list, then both.
        let mut large = alert(texts(1000, 1000));
        assert!(fit_json(&mut large, 100_000, &UNCUT_ALERT_COLUMNS));
        assert!(size(&large) <= 100_000, "{}", size(&large));
        assert!(size(&large) > 50_000, "cut no more than needed: {}", size(&large));
        let commands = large["set_ProcessCommandLine"].as_array().unwrap();
        assert_eq!(commands[..], texts(1000, 1000).as_array().unwrap()[..commands.len()]);
        assert_eq!(large["Cut"]["set_ProcessCommandLine"], 1000);
        assert_eq!(large["RuleId"], "r");
        assert_eq!(large["MatchCount"], 1000);
        // One text of 2 MB: cut with the mark of its whole value.
        let mut long = alert(Value::Array(vec!["y".repeat(2_000_000).into()]));
        assert!(fit_json(&mut long, 100_000, &UNCUT_ALERT_COLUMNS));
        assert!(size(&long) <= 100_000, "{}", size(&long));
        let kept = long["set_ProcessCommandLine"][0].as_str().unwrap();
        assert!(
            kept.starts_with("yyyy") && kept.ends_with(']') && kept.contains("…[2000000 bytes, sha256:"),
            "{kept}"
        );
        // A match's event: its longest value cut to what it must lose, in one step.
        let mut matched = Map::new();
        matched.insert("rule".into(), "r".into());
        matched.insert("source".into(), serde_json::json!({ "file": "x".repeat(300) }));
        matched.insert(
            "event".into(),
            serde_json::json!({ "ProcessCommandLine": "z".repeat(300_000), "FileName": "cmd.exe" }),
        );
        assert!(fit_json(&mut matched, 100_000, &UNCUT_MATCH_MEMBERS));
        assert!(size(&matched) <= 100_000 && size(&matched) > 99_000, "{}", size(&matched));
        assert_eq!(matched["source"]["file"], "x".repeat(300));
        assert_eq!(matched["event"]["FileName"], "cmd.exe");
        assert!(matched.get("Cut").is_none());
        // What cannot fit is cut as far as it goes, and the engine's columns never.
        let mut tiny = alert(texts(3, 10));
        assert!(fit_json(&mut tiny, 10, &UNCUT_ALERT_COLUMNS));
        assert_eq!(tiny["RuleId"], "r");
        assert_eq!(tiny["WindowStart"], "2024-06-12T03:00:00Z");
        assert_eq!(tiny["ReportIds"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_match_line_is_its_records_json_whichever_event_came_before() {
        let runtime = crate::runtime::Runtime::new().expect("a runtime");
        let rule = crate::rules::load_bundled(&runtime).expect("the bundled rule");
        let events = real_events();
        let command = |i: usize| events[i].get(Field::ProcessCommandLine);
        assert!(command(0) != command(1) && command(1) != command(2) && command(0) != command(2));
        // An event matched several times in a row, then others, then the first again.
        let order = [0, 0, 1, 1, 2, 0];
        let mut sink = JsonLines::new(Vec::new());
        let mut expected = Vec::new();
        for &i in &order {
            let matched = Match { rule: &rule, event: &events[i] };
            sink.matched(&matched).expect("written to memory");
            serde_json::to_writer(&mut expected, &MatchRecord::of(&matched)).expect("serialized");
            expected.push(b'\n');
        }
        assert_eq!(String::from_utf8_lossy(&sink.out), String::from_utf8_lossy(&expected));
        let lines: Vec<Value> = sink
            .out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        for (line, &i) in lines.iter().zip(&order) {
            assert_eq!(
                line["event"]["ProcessCommandLine"],
                events[i].get(Field::ProcessCommandLine),
                "event {i}"
            );
        }
    }
}
