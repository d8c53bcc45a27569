//! Inputs: files or standard input, their format told from the name or the first bytes,
//! read as a stream of [`Record`]s.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde_json::Value;

use super::{Origin, Position, Record, RecordError, RejectReason, SourceFormat, defender};

/// How much of an input is read to tell its format: enough for the first line of any
/// realistic JSON lines file; a longer first line is taken as one JSON document.
const SNIFF_BYTES: usize = 1 << 20;

/// The format of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Tell from the file name, then from the first bytes.
    Auto,
    /// One JSON value per line: rows, streaming records, `{"records": [..]}`.
    Jsonl,
    /// One JSON document: an Advanced Hunting API response, `{"records": [..]}`, or an
    /// array of rows.
    Json,
    /// CSV with a header row of column names.
    Csv,
}

impl InputFormat {
    /// Every format's name, for help texts.
    pub const NAMES: &[&str] = &["auto", "jsonl", "json", "csv"];
}

impl FromStr for InputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(InputFormat::Auto),
            "jsonl" => Ok(InputFormat::Jsonl),
            "json" => Ok(InputFormat::Json),
            "csv" => Ok(InputFormat::Csv),
            other => Err(format!("unknown input format {other:?} (one of: {})", Self::NAMES.join(", "))),
        }
    }
}

/// An input that could not be opened or recognized.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The input's name.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Neither the name nor the content tells the format.
    #[error(
        "{path}: cannot tell the input format (not JSON, and no CSV header of known columns); use --input-format"
    )]
    UnknownFormat {
        /// The input's name.
        path: String,
    },
}

/// An input: a file, or standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    name: Arc<str>,
    path: Option<PathBuf>,
}

impl Input {
    /// Standard input, named `-`.
    pub fn stdin() -> Self {
        Self { name: "-".into(), path: None }
    }

    /// The file at `path`; `-` means standard input.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        if path.as_os_str() == "-" {
            return Self::stdin();
        }
        Self { name: path.display().to_string().into(), path: Some(path) }
    }

    /// The name used in events and messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens the input and tells its format.
    pub fn open(&self, format: InputFormat) -> Result<Reader, InputError> {
        let io_error = |source| InputError::Io { path: self.name.to_string(), source };
        let stream: Box<dyn Read + Send> = match &self.path {
            Some(path) => Box::new(File::open(path).map_err(io_error)?),
            None => Box::new(io::stdin()),
        };
        let format = match (format, &self.path) {
            (InputFormat::Auto, Some(path)) => format_from_name(path),
            (format, _) => Some(format).filter(|f| *f != InputFormat::Auto),
        };
        let mut prefix = Vec::with_capacity(SNIFF_BYTES.min(64 * 1024));
        let mut stream = stream;
        (&mut stream).take(SNIFF_BYTES as u64).read_to_end(&mut prefix).map_err(io_error)?;
        let format = match format {
            Some(format) => format,
            None => {
                sniff(&prefix).ok_or_else(|| InputError::UnknownFormat { path: self.name.to_string() })?
            }
        };
        let mut stream = BufReader::with_capacity(256 * 1024, Cursor::new(prefix).chain(stream));
        stream.fill_buf().map_err(io_error)?;
        let records: Box<dyn Iterator<Item = Record> + Send> = match format {
            InputFormat::Jsonl => Box::new(JsonLines::new(self.name.clone(), stream)),
            InputFormat::Json => Box::new(read_document(self.name.clone(), stream).into_iter()),
            InputFormat::Csv => {
                let crlf = prefix_line_ends_with_crlf(stream.buffer());
                Box::new(CsvRows::new(self.name.clone(), stream, crlf))
            }
            InputFormat::Auto => unreachable!("resolved above"),
        };
        Ok(Reader { format, records })
    }
}

/// The records of one opened input.
pub struct Reader {
    format: InputFormat,
    records: Box<dyn Iterator<Item = Record> + Send>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("format", &self.format).finish_non_exhaustive()
    }
}

impl Reader {
    /// The format the input is read in.
    pub fn format(&self) -> InputFormat {
        self.format
    }
}

impl Iterator for Reader {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        self.records.next()
    }
}

/// Whether the first line of `bytes` ends with CRLF.
fn prefix_line_ends_with_crlf(bytes: &[u8]) -> bool {
    bytes.iter().position(|&b| b == b'\n').is_some_and(|at| at > 0 && bytes[at - 1] == b'\r')
}

fn format_from_name(path: &Path) -> Option<InputFormat> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "csv" => Some(InputFormat::Csv),
        "jsonl" | "ndjson" => Some(InputFormat::Jsonl),
        _ => None,
    }
}

/// Tells the format from the first bytes: JSON whose first line is a whole value is JSON
/// lines, other JSON is one document, and a first line naming a known column is CSV.
fn sniff(prefix: &[u8]) -> Option<InputFormat> {
    let text = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Some(InputFormat::Jsonl); // empty: no records in any format
    };
    let text = &text[start..];
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or(text);
    match text[0] {
        b'{' | b'[' => {
            let whole_line = first_line.len() < text.len() || prefix.len() < SNIFF_BYTES;
            if whole_line && serde_json::from_slice::<Value>(first_line).is_ok() {
                Some(InputFormat::Jsonl)
            } else {
                Some(InputFormat::Json)
            }
        }
        _ => {
            let header = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(first_line)
                .records()
                .next()?
                .ok()?;
            defender::csv_columns(&header).iter().any(Option::is_some).then_some(InputFormat::Csv)
        }
    }
}

/// JSON lines: one record (or a `{"records": [..]}` of several) per line.
struct JsonLines<R> {
    name: Arc<str>,
    stream: R,
    line: u64,
    buffer: Vec<u8>,
    pending: std::vec::IntoIter<Record>,
    done: bool,
}

impl<R: BufRead> JsonLines<R> {
    fn new(name: Arc<str>, stream: R) -> Self {
        Self { name, stream, line: 0, buffer: Vec::new(), pending: Vec::new().into_iter(), done: false }
    }

    fn origin(&self) -> Origin {
        Origin { file: self.name.clone(), position: Position::Line(self.line) }
    }

    /// Reads lines until one holds records; `None` at the end of the input.
    fn read_line(&mut self) -> Option<Vec<Record>> {
        loop {
            self.buffer.clear();
            self.line += 1;
            match self.stream.read_until(b'\n', &mut self.buffer) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    let reason = RejectReason::Truncated(format!("read error: {e}"));
                    return Some(vec![Record::Rejected(RecordError { origin: self.origin(), reason })]);
                }
            }
            let complete = self.buffer.ends_with(b"\n");
            let line = self.buffer.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let origin = self.origin();
            let value = match serde_json::from_slice::<Value>(line) {
                Ok(value) => value,
                Err(e) => {
                    let reason = if std::str::from_utf8(line).is_err() {
                        RejectReason::InvalidUtf8
                    } else if e.is_eof() && !complete {
                        RejectReason::Truncated(format!("the input ends inside a JSON value ({e})"))
                    } else {
                        RejectReason::MalformedJson(e.to_string())
                    };
                    return Some(vec![Record::Rejected(RecordError { origin, reason })]);
                }
            };
            let mut records = Vec::with_capacity(1);
            defender::read_json_value(
                value,
                &|| origin.clone(),
                SourceFormat::DefenderJson,
                true,
                &mut records,
            );
            return Some(records);
        }
    }
}

impl<R: BufRead> Iterator for JsonLines<R> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            if let Some(record) = self.pending.next() {
                return Some(record);
            }
            if self.done {
                return None;
            }
            match self.read_line() {
                Some(records) => self.pending = records.into_iter(),
                None => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

/// Reads a whole JSON document and returns its records.
fn read_document(name: Arc<str>, mut stream: impl Read) -> Vec<Record> {
    let at = |position| Origin { file: name.clone(), position };
    let mut bytes = Vec::new();
    if let Err(e) = stream.read_to_end(&mut bytes) {
        let reason = RejectReason::Truncated(format!("read error: {e}"));
        return vec![Record::Rejected(RecordError { origin: at(Position::Record(1)), reason })];
    }
    let document = match serde_json::from_slice::<Value>(&bytes) {
        Ok(document) => document,
        Err(e) => {
            let reason = if e.is_eof() {
                RejectReason::Truncated(format!("the document ends early ({e})"))
            } else {
                RejectReason::MalformedJson(e.to_string())
            };
            return vec![Record::Rejected(RecordError {
                origin: at(Position::Line(e.line() as u64)),
                reason,
            })];
        }
    };
    let mut records = Vec::new();
    let rows = match document {
        Value::Object(mut object) => {
            let origin = |n| at(Position::Record(n));
            if defender::read_api_response(&mut object, origin, &mut records).is_some() {
                return records;
            }
            match object.remove("records") {
                Some(Value::Array(rows)) => rows,
                Some(other) => {
                    object.insert("records".into(), other);
                    vec![Value::Object(object)]
                }
                None => vec![Value::Object(object)],
            }
        }
        Value::Array(rows) => rows,
        other => vec![other],
    };
    for (i, row) in rows.into_iter().enumerate() {
        let origin = at(Position::Record(i as u64 + 1));
        defender::read_json_value(row, &|| origin.clone(), SourceFormat::DefenderJson, false, &mut records);
    }
    records
}

/// CSV rows under a header of column names.
struct CsvRows<R> {
    name: Arc<str>,
    reader: csv::Reader<R>,
    columns: Option<Vec<Option<super::Field>>>,
    row: csv::StringRecord,
    /// The csv crate counts the line of a record that follows a CRLF one short (it counts
    /// the `\n` when it starts the next record), so lines of CRLF files are corrected.
    line_offset: u64,
    done: bool,
}

impl<R: Read> CsvRows<R> {
    fn new(name: Arc<str>, stream: R, crlf: bool) -> Self {
        let reader = csv::ReaderBuilder::new().has_headers(true).from_reader(stream);
        let line_offset = u64::from(crlf);
        Self { name, reader, columns: None, row: csv::StringRecord::new(), line_offset, done: false }
    }

    fn origin(&self, line: u64) -> Origin {
        Origin { file: self.name.clone(), position: Position::Line(line + self.line_offset) }
    }

    fn reject(&mut self, error: csv::Error) -> Record {
        let line = error.position().map_or(self.reader.position().line(), |p| p.line());
        let reason = match error.kind() {
            csv::ErrorKind::Utf8 { .. } => RejectReason::InvalidUtf8,
            csv::ErrorKind::Io(_) => {
                self.done = true;
                RejectReason::Truncated(error.to_string())
            }
            _ => RejectReason::MalformedCsv(error.to_string()),
        };
        Record::Rejected(RecordError { origin: self.origin(line), reason })
    }
}

impl<R: Read> Iterator for CsvRows<R> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.done {
            return None;
        }
        if self.columns.is_none() {
            match self.reader.headers() {
                Ok(headers) => self.columns = Some(defender::csv_columns(headers)),
                Err(e) => {
                    self.done = true;
                    return Some(self.reject(e));
                }
            }
        }
        match self.reader.read_record(&mut self.row) {
            Ok(false) => {
                self.done = true;
                None
            }
            Ok(true) => {
                let line = self.row.position().map_or(0, |p| p.line());
                let columns = self.columns.as_deref().expect("read above");
                Some(defender::read_csv_row(columns, &self.row, self.origin(line)))
            }
            Err(e) => Some(self.reject(e)),
        }
    }
}
