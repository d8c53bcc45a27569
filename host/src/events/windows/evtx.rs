//! Binary EVTX files, read with the `evtx` crate (the parser of the Rust DFIR tools):
//! chunk by chunk, each record rendered as evtx_dump's JSON and normalized from there.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use evtx::{EvtxParser, IntoIterChunks, ParserSettings};
use serde_json::Value;

use super::json::evtx_dump;
use crate::events::{Origin, Position, Record, RecordError, RejectReason, Skipped, SourceFormat};

/// The records of a binary EVTX file, one 64 KiB chunk in memory at a time.
pub(in crate::events) struct EvtxRecords<R: Read + Seek> {
    name: Arc<str>,
    chunks: IntoIterChunks<R>,
    settings: Arc<ParserSettings>,
    chunk_number: u64,
    last_record_id: u64,
    /// Bytes past the last whole chunk: a file cut inside a chunk, whose records are lost.
    partial_chunk_bytes: u64,
}

/// The EVTX file header's size and the size of a chunk.
const FILE_HEADER_BYTES: u64 = 4096;
const CHUNK_BYTES: u64 = 65536;

impl<R: Read + Seek> EvtxRecords<R> {
    /// Opens an EVTX stream; `Err` with the parser's message when its header is bad.
    pub(in crate::events) fn new(name: Arc<str>, mut stream: R) -> Result<Self, String> {
        let size =
            stream.seek(SeekFrom::End(0)).and_then(|size| stream.seek(SeekFrom::Start(0)).map(|_| size));
        let size = size.map_err(|e| e.to_string())?;
        let settings = ParserSettings::new().num_threads(1).separate_json_attributes(false);
        let parser = EvtxParser::from_read_seek(stream).map_err(|e| e.to_string())?;
        let parser = parser.with_configuration(settings.clone());
        Ok(Self {
            name,
            chunks: parser.into_chunks(),
            settings: Arc::new(settings),
            chunk_number: 0,
            last_record_id: 0,
            partial_chunk_bytes: size.saturating_sub(FILE_HEADER_BYTES) % CHUNK_BYTES,
        })
    }

    fn origin(&self, record_id: u64) -> Origin {
        Origin { file: self.name.clone(), position: Position::Record(record_id) }
    }

    /// Reads the next chunk's records.
    fn read_chunk(&mut self) -> Option<Vec<Record>> {
        let Some(chunk) = self.chunks.next() else {
            if self.partial_chunk_bytes == 0 {
                return None;
            }
            let message = format!(
                "the file ends inside chunk {}: {} of its {CHUNK_BYTES} bytes are there, and its records are lost",
                self.chunk_number + 1,
                std::mem::take(&mut self.partial_chunk_bytes),
            );
            let origin = self.origin(self.last_record_id + 1);
            return Some(vec![Record::Rejected(RecordError {
                origin,
                reason: RejectReason::Truncated(message),
            })]);
        };
        self.chunk_number += 1;
        let chunk_number = self.chunk_number;
        let reject = |this: &Self, message: String| {
            Record::Rejected(RecordError {
                origin: this.origin(this.last_record_id + 1),
                reason: RejectReason::MalformedEvtx(format!("chunk {chunk_number}: {message}")),
            })
        };
        let mut data = match chunk {
            Ok(data) => data,
            Err(e) => return Some(vec![reject(self, e.to_string())]),
        };
        let (first, last) = (data.header.first_event_record_id, data.header.last_event_record_id);
        let mut parsed = match data.parse(self.settings.clone()) {
            Ok(parsed) => parsed,
            Err(e) => {
                let lost = last.saturating_sub(first) + 1;
                return Some(vec![reject(
                    self,
                    format!("{e}; its {lost} records ({first} to {last}) are lost"),
                )]);
            }
        };
        let mut records = Vec::new();
        for record in parsed.iter() {
            // Rendered as evtx_dump's JSON, which the dismissal scan reads: a record that is
            // plainly not a process creation is counted as skipped without a parse, as an
            // evtx_dump line is (the renderer's JSON is well formed, so nothing is lost).
            match record.and_then(|r| r.into_json_bytes()) {
                Ok(record) => {
                    self.last_record_id = record.event_record_id;
                    let origin = self.origin(record.event_record_id);
                    if let Some(kind) = super::dismiss(&record.data) {
                        records.push(Record::Skipped(Skipped { origin, kind }));
                        continue;
                    }
                    match serde_json::from_slice::<Value>(&record.data) {
                        Ok(Value::Object(root)) => records.push(evtx_dump(&root, origin, SourceFormat::Evtx)),
                        Ok(_) => records.push(reject(self, "a record that is not an element".into())),
                        Err(e) => records.push(reject(self, format!("the record's JSON: {e}"))),
                    }
                }
                Err(e) => records.push(reject(self, e.to_string())),
            }
        }
        Some(records)
    }
}

/// The records of each chunk (and, at the end, the report of a chunk the file cuts short).
impl<R: Read + Seek> Iterator for EvtxRecords<R> {
    type Item = Vec<Record>;

    fn next(&mut self) -> Option<Vec<Record>> {
        self.read_chunk()
    }
}
