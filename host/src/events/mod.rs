//! Event sources and normalization: every input format becomes the same [`ProcessEvent`].
//!
//! A source yields [`Record`]s: an event, a record of another kind that is skipped, or a
//! record that could not be read, with the reason. Nothing is dropped without a trace: the
//! evaluator counts every record in one of the three.

pub(crate) mod blocks;
mod defender;
mod field;
pub mod input;
mod json;
mod json_documents;
mod json_lines;
mod json_tree;
pub(crate) use json_lines::parse_json_line;
mod json_value;
pub mod lineage;
mod projected;
pub(crate) mod read_ahead;
pub mod time;
mod windows;

use std::fmt::{self, Write as _};
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub(crate) use field::for_each_field;
pub use field::{FIELD_COUNT, Field};
pub use input::{Input, InputError, InputFormat, Reader};
pub use json_lines::MAX_LINE_BYTES;

/// Reads one JSON object as a record, whatever its shape (a Defender row, a streaming
/// record, a Windows event in any JSON shape).
pub fn read_json_record(object: serde_json::Map<String, serde_json::Value>, origin: Origin) -> Record {
    json::read_object(object, origin, SourceFormat::DefenderJson)
}
pub use lineage::Lineage;
use lineage::LineageKeys;
pub use projected::{
    FieldValues, HeldBytes, MIN_SUMMARY_VALUE_BYTES, ProjectedEvent, SUMMARY_TEXT_BYTES, SUMMARY_VALUE_BYTES,
    shortened,
};

/// The format a record was read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    /// Defender `DeviceProcessEvents` rows as flat JSON objects (Advanced Hunting or
    /// Sentinel export).
    DefenderJson,
    /// Defender streaming API records (`category` + `properties`).
    DefenderStreaming,
    /// Rows of an Advanced Hunting API response (`Schema` + `Results`).
    DefenderApi,
    /// The Defender portal's CSV export.
    DefenderCsv,
    /// Binary EVTX.
    Evtx,
    /// EVTX as XML (`wevtutil qe /f:xml`, Event Viewer's "Save as XML").
    EvtxXml,
    /// evtx_dump's JSON rendering (`{"Event":{"System":..,"EventData":..}}`).
    EvtxJson,
    /// Winlogbeat / Elastic (`winlog.event_data`, ECS fields).
    Winlogbeat,
    /// Flat JSON with every EventData field at the top level (HELK, NXLog).
    FlatWindowsJson,
    /// Microsoft Sentinel `WindowsEvent` (EventData as a JSON string).
    SentinelWindowsEvent,
    /// Microsoft Sentinel `SecurityEvent` (EventData as an XML string).
    SentinelSecurityEvent,
}

impl SourceFormat {
    /// The name used in `SourceFormat` and in messages.
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::DefenderJson => "defender-json",
            SourceFormat::DefenderStreaming => "defender-streaming",
            SourceFormat::DefenderApi => "defender-api",
            SourceFormat::DefenderCsv => "defender-csv",
            SourceFormat::Evtx => "evtx",
            SourceFormat::EvtxXml => "evtx-xml",
            SourceFormat::EvtxJson => "evtx-json",
            SourceFormat::Winlogbeat => "winlogbeat",
            SourceFormat::FlatWindowsJson => "windows-flat-json",
            SourceFormat::SentinelWindowsEvent => "sentinel-windowsevent",
            SourceFormat::SentinelSecurityEvent => "sentinel-securityevent",
        }
    }

    /// Whether records of this format are Defender's, which carry the grandparent and
    /// need no lineage.
    pub fn is_defender(self) -> bool {
        matches!(
            self,
            SourceFormat::DefenderJson
                | SourceFormat::DefenderStreaming
                | SourceFormat::DefenderApi
                | SourceFormat::DefenderCsv
        )
    }
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a record was read: the file and its line (line-oriented inputs) or record number
/// (whole-document inputs), both 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The input's name: its path as given, or `-` for standard input.
    pub file: Arc<str>,
    /// The line or record number.
    pub position: Position,
}

/// A record's place in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// 1-based line of a line-oriented file (JSON lines, CSV).
    Line(u64),
    /// 1-based record number in a whole-document file (one JSON document), or the
    /// `EventRecordID` of a binary EVTX record.
    Record(u64),
}

impl Position {
    /// The number, whichever kind it is.
    pub fn number(self) -> u64 {
        match self {
            Position::Line(n) | Position::Record(n) => n,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Position::Line(n) => write!(f, "{}:{n}", self.file),
            Position::Record(n) => write!(f, "{}: record {n}", self.file),
        }
    }
}

/// A normalized process event: every [`Field`] as text, `""` where the source has no value.
///
/// The values share one text buffer: an event is one allocation instead of one per field,
/// which matters most when parsing threads allocate events that other threads free.
#[derive(Debug, Clone)]
pub struct ProcessEvent {
    /// The values' text, one after another; a value set again is written anew at the end.
    text: String,
    /// Per field, where its value lies in `text`.
    spans: [(u32, u32); FIELD_COUNT],
    time: DateTime<Utc>,
    origin: Origin,
    format: SourceFormat,
    lineage: Option<Box<LineageKeys>>,
    line_offset: Option<u64>,
    /// Its place in the order the evaluation read its events (0: not given one yet).
    read_order: u64,
}

impl ProcessEvent {
    /// An event at `time` read at `origin` in `format`, with every other field empty.
    pub fn new(time: DateTime<Utc>, origin: Origin, format: SourceFormat) -> Self {
        Self::with_text_capacity(time, origin, format, INITIAL_TEXT_BYTES)
    }

    /// [`ProcessEvent::new`], with room for `bytes` of values: a source that knows about
    /// how long its values are allocates the text once, not grown as it is written.
    pub fn with_text_capacity(
        time: DateTime<Utc>,
        origin: Origin,
        format: SourceFormat,
        bytes: usize,
    ) -> Self {
        let mut event = Self {
            text: String::with_capacity(bytes),
            spans: [(0, 0); FIELD_COUNT],
            time,
            origin,
            format,
            lineage: None,
            line_offset: None,
            read_order: 0,
        };
        event.write_with(Field::Timestamp, |text| time::write(text, time));
        // SourceFormat and SourceFile are read from `format` and `origin`; only the line
        // needs text of its own.
        let number = event.origin.position.number();
        event.write_with(Field::SourceLine, |text| {
            write!(text, "{number}").expect("writing to a String does not fail");
        });
        event
    }

    /// Appends `value` to the text as `field`'s value.
    fn write(&mut self, field: Field, value: &str) {
        self.write_with(field, |text| text.push_str(value));
    }

    /// Makes what `append` appends to the text `field`'s value.
    fn write_with(&mut self, field: Field, append: impl FnOnce(&mut String)) {
        let start = self.text.len();
        append(&mut self.text);
        self.end_value(field, start);
    }

    /// Makes the text from `start` to its end `field`'s value.
    fn end_value(&mut self, field: Field, start: usize) {
        let span = |n: usize| u32::try_from(n).expect("an event's text is under 4 GiB");
        self.spans[field as usize] = (span(start), span(self.text.len()));
    }

    /// The value of `field`.
    pub fn get(&self, field: Field) -> &str {
        match field {
            Field::SourceFormat => self.format.name(),
            Field::SourceFile => &self.origin.file,
            _ => {
                let (start, end) = self.spans[field as usize];
                &self.text[start as usize..end as usize]
            }
        }
    }

    /// Sets a field of the process. `Timestamp` and the source fields are set by
    /// [`ProcessEvent::new`] and are not changed here.
    pub fn set(&mut self, field: Field, value: impl AsRef<str>) {
        if field != Field::Timestamp && !field.is_source() {
            self.write(field, value.as_ref());
        }
    }

    /// Sets `field` (as [`ProcessEvent::set`] would) to the canonical text of `time`.
    pub fn set_time(&mut self, field: Field, time: DateTime<Utc>) {
        if field != Field::Timestamp && !field.is_source() {
            self.write_with(field, |text| time::write(text, time));
        }
    }

    /// Sets `field` to the value `from` has (as [`ProcessEvent::set`] would), copying it
    /// within the event's text.
    pub fn set_from(&mut self, field: Field, from: Field) {
        if field == Field::Timestamp || field.is_source() {
            return;
        }
        match from {
            Field::SourceFormat | Field::SourceFile => {
                // Not in the text: read from the format and origin.
                let value = self.get(from).to_owned();
                self.write(field, &value);
            }
            _ => {
                let (start, end) = self.spans[from as usize];
                let at = self.text.len();
                self.text.extend_from_within(start as usize..end as usize);
                self.end_value(field, at);
            }
        }
    }

    /// When the event happened.
    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }

    /// Milliseconds since the Unix epoch.
    pub fn time_ms(&self) -> i64 {
        self.time.timestamp_millis()
    }

    /// Where the event was read.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The format the event was read in.
    pub fn source_format(&self) -> SourceFormat {
        self.format
    }

    /// How the source identifies the process and its parent (Windows sources).
    pub fn lineage(&self) -> Option<&LineageKeys> {
        self.lineage.as_deref()
    }

    /// Where the event's line starts in its input, for JSON lines.
    pub fn line_offset(&self) -> Option<u64> {
        self.line_offset
    }

    /// Its place in the order the evaluation read its events: what orders events of the
    /// same time in a window, whenever each was evaluated (0: none given).
    pub fn read_order(&self) -> u64 {
        self.read_order
    }

    /// Gives the event its place in the reading order.
    pub fn set_read_order(&mut self, order: u64) {
        self.read_order = order;
    }

    /// Frees the room its text has to grow: for an event kept a while, unchanged.
    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
    }

    /// The bytes of its values' text (what a batch's bound counts: see
    /// [`crate::pipeline::MAX_BATCH_BYTES`]).
    pub fn value_bytes(&self) -> usize {
        self.text.len()
    }

    /// About how many bytes the event holds: its values' text, their headers and its
    /// lineage keys.
    pub fn size_in_memory(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.text.capacity()
            + self.lineage.as_ref().map_or(0, |keys| keys.size_in_memory())
    }

    /// Sets where the event's line starts.
    pub fn set_line_offset(&mut self, offset: u64) {
        self.line_offset = Some(offset);
    }

    /// Sets the lineage keys.
    pub fn set_lineage(&mut self, keys: LineageKeys) {
        self.lineage = Some(Box::new(keys));
    }
}

/// Room for a typical event's values (a Defender row holds ~600 bytes of them), so that
/// the text is rarely grown.
const INITIAL_TEXT_BYTES: usize = 768;

/// Events are equal when their values, time, origin, format, lineage keys and line
/// offset are: not their text's layout, which depends on the order the fields were set.
impl PartialEq for ProcessEvent {
    fn eq(&self, other: &Self) -> bool {
        Field::ALL.iter().all(|&f| self.get(f) == other.get(f))
            && self.time == other.time
            && self.origin == other.origin
            && self.format == other.format
            && self.lineage == other.lineage
            && self.line_offset == other.line_offset
    }
}

/// What reading one record gave.
#[derive(Debug)]
pub enum Record {
    /// A process-creation event, to evaluate.
    Event(Box<ProcessEvent>),
    /// A well-formed record of another kind (another table, another event id).
    Skipped(Skipped),
    /// A record that could not be read.
    Rejected(RecordError),
}

/// A record that is not a process creation, and what it is instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where it was read.
    pub origin: Origin,
    /// What kind of record it is, e.g. `DeviceNetworkEvents`.
    pub kind: String,
}

/// A record that could not be read, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {reason}")]
pub struct RecordError {
    /// Where it was read.
    pub origin: Origin,
    /// What is wrong with it.
    pub reason: RejectReason,
}

/// What is wrong with a rejected record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// Not valid JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// Not well-formed XML.
    #[error("malformed XML: {0}")]
    MalformedXml(String),
    /// A binary EVTX chunk or record that does not parse.
    #[error("malformed EVTX: {0}")]
    MalformedEvtx(String),
    /// An `EventData` string that does not parse.
    #[error("EventData does not parse: {0}")]
    MalformedEventData(String),
    /// Not a CSV row that fits the header.
    #[error("malformed CSV row: {0}")]
    MalformedCsv(String),
    /// Not valid UTF-8.
    #[error("not valid UTF-8")]
    InvalidUtf8,
    /// Valid JSON of a shape no reader knows.
    #[error("unrecognized record: {0}")]
    UnknownShape(String),
    /// A column holds a value of the wrong type.
    #[error("column {column}: {problem}")]
    WrongType {
        /// The column.
        column: &'static str,
        /// What was expected and found.
        problem: String,
    },
    /// The record has no time.
    #[error("no Timestamp")]
    MissingTimestamp,
    /// The time does not parse.
    #[error("Timestamp {0:?} is not a time")]
    BadTimestamp(String),
    /// The input ended inside a record.
    #[error("truncated: {0}")]
    Truncated(String),
    /// A line (or a CSV row) longer than a record may be: passed over, not held in memory.
    #[error("a {unit} of {bytes} bytes, longer than the {max} a record may have: not read", max = json_lines::MAX_LINE_BYTES)]
    TooLong {
        /// `line` or `row`.
        unit: &'static str,
        /// Its length, without the newline that ends it.
        bytes: u64,
    },
    /// A CSV row, or a record of a JSON document, longer than a record may be: neither it
    /// nor the rest of its input is read (its end cannot be told without reading it whole).
    #[error(
        "a {unit} longer than the {max} bytes a record may have: not read, nor the rest of the input (its {unit}s cannot be told apart after it)",
        max = json_lines::MAX_LINE_BYTES
    )]
    RowTooLong {
        /// `row` or `record`.
        unit: &'static str,
    },
}

impl RejectReason {
    /// A short name of the reason, for the summary's counts.
    pub fn kind(&self) -> &'static str {
        match self {
            RejectReason::MalformedJson(_) => "malformed JSON",
            RejectReason::MalformedCsv(_) => "malformed CSV",
            RejectReason::MalformedXml(_) => "malformed XML",
            RejectReason::MalformedEvtx(_) => "malformed EVTX",
            RejectReason::MalformedEventData(_) => "malformed EventData",
            RejectReason::InvalidUtf8 => "invalid UTF-8",
            RejectReason::UnknownShape(_) => "unrecognized record",
            RejectReason::WrongType { .. } => "wrong type",
            RejectReason::MissingTimestamp => "no Timestamp",
            RejectReason::BadTimestamp(_) => "bad Timestamp",
            RejectReason::Truncated(_) => "truncated",
            RejectReason::TooLong { .. } | RejectReason::RowTooLong { .. } => "too long",
        }
    }
}

/// A small generator (xorshift) for tests, so that drawn cases are the same from run to run:
/// each call draws a number below the one given.
#[cfg(test)]
pub(crate) fn drawn(mut state: u64) -> impl FnMut(u64) -> u64 {
    move |below| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    }
}

/// The process creations of the shared EVTX file `name` (a directory's name gives those of
/// every file in it): real records, for tests.
#[cfg(test)]
pub(crate) fn shared_evtx_process_creations(name: &str) -> Vec<ProcessEvent> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/evtx").join(name);
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let entries = std::fs::read_dir(&path).expect("the shared EVTX files");
        entries.map(|entry| entry.expect("a directory entry").path()).collect()
    } else {
        vec![path]
    };
    let mut events = Vec::new();
    for file in files {
        let reader = Input::file(&file).open(InputFormat::Auto).expect("a shared EVTX file opens");
        events.extend(reader.filter_map(|record| match record {
            Record::Event(event) => Some(*event),
            _ => None,
        }));
    }
    events
}
