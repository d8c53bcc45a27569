//! JSON documents, one after another in a file: each is a record, or holds records (an
//! array of them, `{"records": [..]}`, an Advanced Hunting API response), as API exports and
//! evtx_dump's JSON output write them.
//!
//! A document is read as it streams by: the rows of its arrays are handed on one at a
//! time, so that a document of any size is read in bounded memory (a 290 MB array was held
//! whole, 3 GB of values). What is held whole, a row or a document that is one record, may
//! take at most [`MAX_LINE_BYTES`] of text, as a JSON line may; past it, the record and the
//! rest of the file are refused with the reason (a JSON text cannot be resumed inside a
//! value without reading it).

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer};
use serde_json::{Map, Number, Value};

use super::json_lines::MAX_LINE_BYTES;
use super::{Origin, Position, Record, RecordError, RejectReason, SourceFormat, json};

/// Records handed on at once: a chunk ends at this many records or bytes of their text.
const CHUNK_RECORDS: usize = 256;
const CHUNK_BYTES: u64 = 4 << 20;
/// Chunks read ahead of the caller (besides the one it holds and the one being filled).
const CHUNKS_AHEAD: usize = 1;

/// Documents up to this size are read on the caller's thread, whole: a thread would cost
/// more than reading them (a pretty-printed Kafka message, an API page).
const READ_HERE_BYTES: u64 = 1 << 20;

/// The records of the JSON documents of `stream` (evtx_dump's `Record N` lines passed over),
/// in chunks: read here if the stream is small, else on a thread of their own as they are
/// taken. A `live` stream (one followed, or a pipe a producer writes to) is read on a thread
/// from the start, and each record handed on as soon as it is read: waiting for a chunk, or
/// for the first MiB, would hold its records back until more came.
pub(super) fn documents<R: BufRead + Send + 'static>(
    name: Arc<str>,
    mut stream: R,
    live: bool,
) -> Box<dyn Iterator<Item = Vec<Record>> + Send> {
    if live {
        return Box::new(json_documents(name, WithoutRecordHeaders::new(stream), 1));
    }
    let mut head = Vec::new();
    match (&mut stream).take(READ_HERE_BYTES + 1).read_to_end(&mut head) {
        Ok(read) if read as u64 <= READ_HERE_BYTES => {
            Box::new(read_here(name, WithoutRecordHeaders::new(Cursor::new(head))).into_iter())
        }
        Ok(_) => Box::new(json_documents(
            name,
            WithoutRecordHeaders::new(Cursor::new(head).chain(stream)),
            CHUNK_RECORDS,
        )),
        // What was read, then the error, which the parser reports where it stopped.
        Err(error) => {
            let failing = BufReader::new(Cursor::new(head).chain(Fails(Some(error))));
            Box::new(read_here(name, WithoutRecordHeaders::new(failing)).into_iter())
        }
    }
}

/// A stream whose next read fails with the error it holds, once.
struct Fails(Option<io::Error>);

impl Read for Fails {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        self.0.take().map_or(Ok(0), Err)
    }
}

/// The records of the JSON documents of `stream`, read on this thread, in chunks.
fn read_here<R: Read>(name: Arc<str>, stream: R) -> Vec<Vec<Record>> {
    match read_documents(name, stream, Sink::Here(Vec::new()), CHUNK_RECORDS) {
        Sink::Here(chunks) => chunks,
        Sink::Channel(_) => unreachable!("read here"),
    }
}

/// Where chunks of records go: to the caller on another thread, or kept here.
enum Sink {
    Channel(SyncSender<Vec<Record>>),
    Here(Vec<Vec<Record>>),
}

impl Sink {
    /// Hands `chunk` on; `false` when the caller has gone.
    fn send(&mut self, chunk: Vec<Record>) -> bool {
        match self {
            Sink::Channel(sender) => sender.send(chunk).is_ok(),
            Sink::Here(chunks) => {
                chunks.push(chunk);
                true
            }
        }
    }
}

/// The records of the JSON documents of `stream`, read on a thread of their own (a
/// document's rows come out of the JSON parser's calls, not to the caller's), in chunks of
/// at most `chunk_records`.
fn json_documents<R: Read + Send + 'static>(
    name: Arc<str>,
    stream: R,
    chunk_records: usize,
) -> DocumentChunks {
    let (sender, chunks) = sync_channel(CHUNKS_AHEAD);
    let reader_name = name.clone();
    let thread = std::thread::Builder::new()
        .name("json-documents".into())
        .spawn(move || {
            read_documents(reader_name, stream, Sink::Channel(sender), chunk_records);
        })
        .map_err(|e| e.to_string());
    match thread {
        Ok(thread) => DocumentChunks { name, chunks: Some(chunks), thread: Some(thread) },
        Err(e) => {
            // Without a thread, the input is one rejection that says why.
            let (sender, chunks) = sync_channel(1);
            let origin = Origin { file: name.clone(), position: Position::Record(1) };
            let reason = RejectReason::Truncated(format!("not read: no thread to read it ({e})"));
            let _ = sender.send(vec![Record::Rejected(RecordError { origin, reason })]);
            DocumentChunks { name, chunks: Some(chunks), thread: None }
        }
    }
}

/// The chunks of records read from JSON documents.
pub(super) struct DocumentChunks {
    name: Arc<str>,
    chunks: Option<Receiver<Vec<Record>>>,
    thread: Option<JoinHandle<()>>,
}

impl Iterator for DocumentChunks {
    type Item = Vec<Record>;

    fn next(&mut self) -> Option<Vec<Record>> {
        if let Ok(chunk) = self.chunks.as_ref()?.recv() {
            return Some(chunk);
        }
        self.chunks = None;
        // The reading thread has ended: if it did so by a panic, say so rather than end
        // the input as if it were complete.
        let panicked = self.thread.take().is_some_and(|thread| thread.join().is_err());
        panicked.then(|| {
            let origin = Origin { file: self.name.clone(), position: Position::Record(0) };
            let reason =
                RejectReason::Truncated("the reader of these documents failed; the rest is not read".into());
            vec![Record::Rejected(RecordError { origin, reason })]
        })
    }
}

/// Why reading stopped early: a held record too long (the reader's own error).
#[derive(Debug, thiserror::Error)]
#[error("a record longer than a record may be")]
struct RecordTooLong;

/// A stream that counts the bytes read and refuses to read past a limit that the reader
/// moves: the end of what may be held from where holding began.
struct Counted<R> {
    inner: R,
    read: Rc<Cell<u64>>,
    limit: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.read.get();
        let allowed = self.limit.get().saturating_sub(read);
        if allowed == 0 && !buf.is_empty() {
            return Err(io::Error::other(RecordTooLong));
        }
        let max = buf.len().min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.read.set(read + n as u64);
        Ok(n)
    }
}

/// The state of the reading thread: where records are numbered, what is held, and where
/// the chunks go.
struct DocumentReader {
    name: Arc<str>,
    /// Records numbered so far, from 1 across the file.
    record: u64,
    read: Rc<Cell<u64>>,
    limit: Rc<Cell<u64>>,
    /// Where the record being read began.
    record_start: u64,
    chunk: Vec<Record>,
    chunk_bytes: u64,
    sink: Sink,
    /// Records handed on at once, at most.
    chunk_records: usize,
    /// Set when the caller has gone: reading ends without a word.
    stopped: bool,
}

/// The error a visitor stops the parser with once the caller has gone.
const STOPPED: &str = "the caller stopped reading";

impl DocumentReader {
    fn origin(&self, record: u64) -> Origin {
        Origin { file: self.name.clone(), position: Position::Record(record) }
    }

    /// What is read from here on is held whole, up to the bound.
    fn hold_from_here(&mut self) {
        self.record_start = self.read.get();
        self.limit.set(self.record_start + MAX_LINE_BYTES as u64);
    }

    /// What is left of the bound of what is held.
    fn allowance(&self) -> u64 {
        self.limit.get().saturating_sub(self.read.get())
    }

    fn restore_allowance(&mut self, allowance: u64) {
        self.limit.set(self.read.get() + allowance);
    }

    /// Reads one row of an array into `out`'s records.
    fn row<E: de::Error>(&mut self, row: Value, format: SourceFormat) -> Result<(), E> {
        self.record += 1;
        let origin = self.origin(self.record);
        let mut records = Vec::with_capacity(1);
        json::read_value(row, &|| origin.clone(), format, false, &mut records);
        self.push(records)
    }

    /// Reads a document that is one object, held whole: a record, `{"records": <not an
    /// array>}`, or an API response whose results came before its schema.
    fn object<E: de::Error>(&mut self, mut object: Map<String, Value>) -> Result<(), E> {
        let mut records = Vec::new();
        let first = self.record;
        let origin = |n| Origin { file: self.name.clone(), position: Position::Record(first + n) };
        if json::read_api_response(&mut object, origin, &mut records).is_some() {
            self.record += records.len() as u64;
            return self.push(records);
        }
        self.row(Value::Object(object), SourceFormat::DefenderJson)
    }

    fn push<E: de::Error>(&mut self, records: Vec<Record>) -> Result<(), E> {
        self.chunk.extend(records);
        self.chunk_bytes += self.read.get() - self.record_start;
        if self.chunk.len() >= self.chunk_records || self.chunk_bytes >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush<E: de::Error>(&mut self) -> Result<(), E> {
        self.chunk_bytes = 0;
        if self.chunk.is_empty() {
            return Ok(());
        }
        if !self.sink.send(std::mem::take(&mut self.chunk)) {
            self.stopped = true;
            return Err(E::custom(STOPPED));
        }
        Ok(())
    }

    /// The error that ends the file, as its last record.
    fn end_with(&mut self, error: serde_json::Error) {
        if self.stopped {
            return;
        }
        let line = error.line() as u64;
        let reason = if error.is_eof() {
            RejectReason::Truncated(format!("the document ends early ({error})"))
        } else if error.is_io() {
            let io_error = io::Error::from(error);
            if io_error.get_ref().is_some_and(|inner| inner.is::<RecordTooLong>()) {
                let record = self.record + 1;
                let reason = RejectReason::RowTooLong { unit: "record" };
                self.chunk.push(Record::Rejected(RecordError { origin: self.origin(record), reason }));
                return;
            }
            RejectReason::Truncated(format!("read error: {io_error}"))
        } else {
            RejectReason::MalformedJson(error.to_string())
        };
        let origin = Origin { file: self.name.clone(), position: Position::Line(line) };
        self.chunk.push(Record::Rejected(RecordError { origin, reason }));
    }
}

/// Reads every document of `stream`, sending its records in chunks.
fn read_documents<R: Read>(name: Arc<str>, stream: R, sink: Sink, chunk_records: usize) -> Sink {
    let read = Rc::new(Cell::new(0));
    let limit = Rc::new(Cell::new(MAX_LINE_BYTES as u64));
    let counted = Counted { inner: stream, read: read.clone(), limit: limit.clone() };
    let mut reader = DocumentReader {
        name,
        record: 0,
        read,
        limit,
        record_start: 0,
        chunk: Vec::new(),
        chunk_bytes: 0,
        sink,
        chunk_records,
        stopped: false,
    };
    let mut parser = serde_json::Deserializer::from_reader(counted);
    loop {
        reader.hold_from_here();
        // `end` passes over white space and tells whether another document follows.
        match parser.end() {
            Ok(()) => break,
            Err(e) if e.is_io() => {
                reader.end_with(e);
                break;
            }
            Err(_) => {}
        }
        let document = Rows { reader: &mut reader, format: SourceFormat::DefenderJson, document: true };
        match document.deserialize(&mut parser) {
            Ok(None) => {}
            // A document that is neither an object nor an array: rejected as a row would be.
            Ok(Some(other)) => {
                if reader.row::<serde_json::Error>(other, SourceFormat::DefenderJson).is_err() {
                    return reader.sink;
                }
            }
            Err(e) => {
                reader.end_with(e);
                break;
            }
        }
    }
    let _ = reader.flush::<serde_json::Error>();
    reader.sink
}

/// A value whose arrays' items are read as rows of `format`, one at a time. It gives
/// `None` when it was an array (its rows read), or, for a `document`, an object whose
/// records were read; otherwise the value itself, held whole.
struct Rows<'a> {
    reader: &'a mut DocumentReader,
    format: SourceFormat,
    document: bool,
}

impl<'de> DeserializeSeed<'de> for Rows<'_> {
    type Value = Option<Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Option<Value>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Rows<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut rows: A) -> Result<Option<Value>, A::Error> {
        loop {
            self.reader.hold_from_here();
            let Some(row) = rows.next_element::<Value>()? else { return Ok(None) };
            self.reader.row(row, self.format)?;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Option<Value>, A::Error> {
        if !self.document {
            return Value::deserialize(MapAccessDeserializer::new(entries)).map(Some);
        }
        // A document that is an object: its `records`, or its `Results` after its
        // `Schema`, are read row by row; the rest of it is held.
        let mut object = Map::new();
        let mut has_schema = false;
        let mut rows_read = false;
        while let Some(key) = entries.next_key::<String>()? {
            let format = match key.as_str() {
                "records" => Some(SourceFormat::DefenderJson),
                "Results" | "results" if has_schema => Some(SourceFormat::DefenderApi),
                "Schema" | "schema" => {
                    has_schema = true;
                    None
                }
                _ => None,
            };
            let Some(format) = format else {
                let value = entries.next_value::<Value>()?;
                object.insert(key, value);
                continue;
            };
            let allowance = self.reader.allowance();
            let rows = Rows { reader: &mut *self.reader, format, document: false };
            let value = entries.next_value_seed(rows)?;
            self.reader.restore_allowance(allowance);
            match value {
                None => rows_read = true,
                Some(value) => {
                    object.insert(key, value);
                }
            }
        }
        if !rows_read {
            self.reader.object(object)?;
        }
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Option<Value>, E> {
        Ok(Some(Value::Bool(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Option<Value>, E> {
        Ok(Some(Value::from(value)))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Option<Value>, E> {
        Ok(Some(Value::from(value)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Option<Value>, E> {
        Ok(Some(Number::from_f64(value).map_or(Value::Null, Value::Number)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Option<Value>, E> {
        Ok(Some(Value::String(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Option<Value>, E> {
        Ok(Some(Value::String(value)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Value>, E> {
        Ok(Some(Value::Null))
    }
}

/// evtx_dump's `Record 12` line before each record of its JSON and XML output.
pub(super) fn is_record_header(line: &[u8]) -> bool {
    let line = line.trim_ascii();
    line.strip_prefix(b"Record ").is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

/// The longest line looked at as a `Record N` header; a longer line is passed on as it
/// streams, never held.
const MAX_HEADER_BYTES: u64 = 256;

/// A stream without evtx_dump's `Record N` lines.
pub(super) struct WithoutRecordHeaders<R> {
    stream: R,
    /// The start of the current line, read to tell whether it is a header.
    line: Vec<u8>,
    at: usize,
    /// Whether the rest of the current line is passed on straight from the stream.
    in_long_line: bool,
}

impl<R: BufRead> WithoutRecordHeaders<R> {
    pub(super) fn new(stream: R) -> Self {
        Self { stream, line: Vec::new(), at: 0, in_long_line: false }
    }
}

impl<R: BufRead> Read for WithoutRecordHeaders<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.at < self.line.len() {
                let n = out.len().min(self.line.len() - self.at);
                out[..n].copy_from_slice(&self.line[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            if self.in_long_line {
                let available = self.stream.fill_buf()?;
                if available.is_empty() {
                    return Ok(0);
                }
                let available = &available[..available.len().min(out.len())];
                let (n, ends) = match memchr::memchr(b'\n', available) {
                    Some(i) => (i + 1, true),
                    None => (available.len(), false),
                };
                out[..n].copy_from_slice(&available[..n]);
                self.stream.consume(n);
                self.in_long_line = !ends;
                return Ok(n);
            }
            self.line.clear();
            self.at = 0;
            let read = (&mut self.stream).take(MAX_HEADER_BYTES).read_until(b'\n', &mut self.line)?;
            if read == 0 {
                return Ok(0);
            }
            if self.line.last() != Some(&b'\n') && read as u64 == MAX_HEADER_BYTES {
                self.in_long_line = true;
            } else if is_record_header(&self.line) {
                // Keep the newline so that line numbers in errors stay true.
                self.line.clear();
                self.line.push(b'\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Cursor};
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const ROW: &str = r#"{"Timestamp": "2024-05-01T10:15:02.123Z", "DeviceId": "d1", "DeviceName": "web01", "ActionType": "ProcessCreated", "FileName": "cmd.exe", "FolderPath": "C:\\Windows\\System32\\cmd.exe", "ProcessCommandLine": "cmd.exe /c whoami", "InitiatingProcessFileName": "w3wp.exe"}"#;

    /// A stream that counts what was taken from it.
    struct Taken<R> {
        inner: R,
        taken: Arc<AtomicU64>,
    }

    impl<R: Read> Read for Taken<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.taken.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
    }

    fn documents(text: impl Into<Vec<u8>>) -> (DocumentChunks, Arc<AtomicU64>) {
        let taken = Arc::new(AtomicU64::new(0));
        let stream = Taken { inner: Cursor::new(text.into()), taken: taken.clone() };
        let stream = WithoutRecordHeaders::new(BufReader::with_capacity(64 * 1024, stream));
        (json_documents(Arc::from("d.json"), stream, CHUNK_RECORDS), taken)
    }

    /// Read as an input is: here when small, else on a thread.
    fn read(text: impl Into<Vec<u8>>) -> Vec<Record> {
        super::documents(Arc::from("d.json"), Cursor::new(text.into()), false).flatten().collect()
    }

    /// Each record as `event FORMAT @N`, `rejected @N: REASON`, `skipped @N`.
    fn described(records: &[Record]) -> Vec<String> {
        let at = |origin: &Origin| match origin.position {
            Position::Record(n) => format!("@{n}"),
            Position::Line(n) => format!("line {n}"),
        };
        records
            .iter()
            .map(|record| match record {
                Record::Event(event) => {
                    format!("event {} {}", event.source_format().name(), at(event.origin()))
                }
                Record::Skipped(skipped) => format!("skipped {}", at(&skipped.origin)),
                Record::Rejected(error) => format!("rejected {}: {}", at(&error.origin), error.reason.kind()),
            })
            .collect()
    }

    #[test]
    fn every_shape_of_document_gives_its_records_numbered_across_the_file() {
        let schema = r#"[{"Name": "Timestamp", "Type": "DateTime"}]"#;
        let text = format!(
            "[{ROW}, {ROW}]\n{{\"records\": [{ROW}, [1]]}}\n{{\"Schema\": {schema}, \"Results\": [{ROW}], \"Stats\": {{}}}}\n\
             {{\"Results\": [{ROW}, {ROW}], \"schema\": {schema}}}\n{ROW}\n7\n{{\"records\": 3, \"Timestamp\": \"x\"}}\n[]"
        );
        assert_eq!(
            described(&read(text)),
            [
                "event defender-json @1",
                "event defender-json @2",
                "event defender-json @3",
                "rejected @4: unrecognized record",
                "event defender-api @5",
                // The results before the schema: held, then read as the API's rows.
                "event defender-api @6",
                "event defender-api @7",
                "event defender-json @8",
                "rejected @9: unrecognized record",
                "rejected @10: bad Timestamp",
            ]
        );
    }

    #[test]
    fn a_small_input_read_here_gives_what_the_thread_gives() {
        let text = format!("Record 1\n[{ROW},\n{ROW}, 3]\n{{\"records\": [{ROW}]}}\n{{\"x\": ");
        let here = read(text.clone());
        assert_eq!(here.len(), 5);
        assert_eq!(described(&here), described(&documents(text).0.flatten().collect::<Vec<_>>()));
        // Past the size read here, the thread reads it, the same.
        let large = format!("[{}]", vec![ROW; 5_000].join(","));
        assert!(large.len() as u64 > READ_HERE_BYTES);
        assert_eq!(
            described(&read(large.clone())),
            described(&documents(large).0.flatten().collect::<Vec<_>>())
        );
    }

    #[test]
    fn a_read_error_ends_the_records_with_its_reason() {
        /// Gives `text`, then fails.
        struct FailsAfter(Cursor<Vec<u8>>);
        impl Read for FailsAfter {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(io::Error::other("the disk is gone")),
                    n => Ok(n),
                }
            }
        }
        let text = format!("[{ROW},\n{ROW},\n{ROW}");
        let stream = BufReader::new(FailsAfter(Cursor::new(text.into_bytes())));
        let records: Vec<Record> = super::documents(Arc::from("d.json"), stream, false).flatten().collect();
        assert_eq!(
            described(&records),
            [
                "event defender-json @1",
                "event defender-json @2",
                "event defender-json @3",
                "rejected line 3: truncated"
            ]
        );
        let Record::Rejected(error) = &records[3] else { unreachable!() };
        assert!(error.reason.to_string().contains("the disk is gone"), "{}", error.reason);
    }

    #[test]
    fn a_live_streams_records_come_as_soon_as_they_are_read() {
        /// A stream a producer writes to: what has been sent, then it waits for more.
        struct Producer(std::sync::mpsc::Receiver<Vec<u8>>, Cursor<Vec<u8>>);
        impl Read for Producer {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                loop {
                    match self.1.read(buf)? {
                        0 => match self.0.recv() {
                            Ok(more) => self.1 = Cursor::new(more),
                            Err(_) => return Ok(0),
                        },
                        n => return Ok(n),
                    }
                }
            }
        }
        let (produce, produced) = std::sync::mpsc::channel();
        let stream = BufReader::new(Producer(produced, Cursor::new(Vec::new())));
        let (taken, records) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for chunk in super::documents(Arc::from("-"), stream, true) {
                for record in chunk {
                    let _ = taken.send(record);
                }
            }
        });
        let wait = std::time::Duration::from_secs(20);
        // A whole document, a row of an array still open, then the rest: each record comes
        // while the producer waits.
        produce.send(format!("{{\"records\": [{ROW}]}}\n").into_bytes()).unwrap();
        assert!(matches!(records.recv_timeout(wait), Ok(Record::Event(_))), "the first document");
        produce.send(format!("[{ROW},\n").into_bytes()).unwrap();
        assert!(matches!(records.recv_timeout(wait), Ok(Record::Event(_))), "the open array's first row");
        produce.send(format!("{ROW}]\n").into_bytes()).unwrap();
        assert!(matches!(records.recv_timeout(wait), Ok(Record::Event(_))), "its second");
        drop(produce);
    }

    #[test]
    fn evtx_dump_headers_are_passed_over_and_a_long_line_is_not_held() {
        let long = format!("[{}]", vec![ROW; 2_000].join(","));
        let text = format!("Record 1\n{ROW}\nRecord 2\n{ROW}\n{long}\n  Record 3  \n{ROW}");
        let records = read(text);
        assert_eq!(records.len(), 2_003);
        assert!(records.iter().all(|r| matches!(r, Record::Event(_))), "{:?}", described(&records[..3]));
    }

    #[test]
    fn an_array_is_read_a_row_at_a_time() {
        // 60 MB of rows in one array: the first rows come out while most of it is unread.
        let rows = 200_000;
        let text = format!("[{}]", vec![ROW; rows].join(",\n"));
        let size = text.len() as u64;
        let (mut chunks, taken) = documents(text);
        let first = chunks.next().expect("a first chunk");
        assert!(matches!(first[0], Record::Event(_)));
        let taken_then = taken.load(Ordering::Relaxed);
        assert!(taken_then < size / 10, "{taken_then} of {size} bytes read before the first rows came out");
        let rest: usize = chunks.map(|chunk| chunk.len()).sum();
        assert_eq!(first.len() + rest, rows);
    }

    #[test]
    fn a_syntax_error_keeps_the_rows_before_it_and_names_its_line() {
        let records = read(format!("[{ROW},\n{ROW},\n{{\"Timestamp\": ]\n, {ROW}]"));
        assert_eq!(
            described(&records),
            ["event defender-json @1", "event defender-json @2", "rejected line 3: malformed JSON"]
        );
        let records = read(format!("{{\"records\": [{ROW},\n{ROW}"));
        assert_eq!(
            described(&records),
            ["event defender-json @1", "event defender-json @2", "rejected line 2: truncated"]
        );
    }

    #[test]
    fn a_record_held_past_the_bound_ends_the_file_with_the_reason() {
        let row_of = |bytes: usize| {
            let padding = bytes - ROW.len() - r#", "Padding": """#.len();
            format!("{}, \"Padding\": \"{}\"}}", &ROW[..ROW.len() - 1], "a".repeat(padding))
        };
        // Just under the bound (with the separator before it): read.
        let under = row_of(MAX_LINE_BYTES - 2);
        let records = read(format!("[{ROW}, {under}, {ROW}]"));
        assert_eq!(
            described(&records),
            ["event defender-json @1", "event defender-json @2", "event defender-json @3"]
        );

        // Past it: refused, and nothing after it read.
        let over = row_of(MAX_LINE_BYTES + 1);
        let text = format!("[{ROW}, {over}, {ROW}]\n{}", vec![ROW; 100_000].join("\n"));
        let size = text.len() as u64;
        let (chunks, taken) = documents(text);
        let records: Vec<Record> = chunks.flatten().collect();
        assert_eq!(described(&records), ["event defender-json @1", "rejected @2: too long"]);
        let Record::Rejected(error) = &records[1] else { unreachable!() };
        assert!(
            error.reason.to_string().starts_with("a record longer than the 16777216 bytes"),
            "{}",
            error.reason
        );
        let taken = taken.load(Ordering::Relaxed);
        assert!(taken < MAX_LINE_BYTES as u64 + (1 << 20) && taken < size, "{taken} of {size} bytes read");

        // A document that is one object is held whole, so bounded the same way.
        let records = read(format!("{ROW}\n{}", row_of(MAX_LINE_BYTES + 10)));
        assert_eq!(described(&records), ["event defender-json @1", "rejected @2: too long"]);
    }

    #[test]
    fn reading_ends_when_the_caller_stops() {
        let text = format!("[{}]", vec![ROW; 100_000].join(","));
        let (mut chunks, taken) = documents(text);
        chunks.next().expect("a first chunk");
        let thread = chunks.thread.take().expect("the reading thread");
        drop(chunks);
        thread.join().expect("the thread ends without a panic");
        assert!(taken.load(Ordering::Relaxed) < 10 << 20);
    }
}
