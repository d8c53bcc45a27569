//! Binary EVTX files, read with the `evtx` crate (the parser of the Rust DFIR tools):
//! chunk by chunk, each record rendered as evtx_dump's JSON and normalized from there, the
//! chunks of a large file on several threads.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::mpsc::{Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use evtx::{EvtxChunk, EvtxChunkData, EvtxParser, EvtxRecordHeader, ParserSettings};
use serde_json::Value;

use super::evtx_binxml::{RecordReader, Told};
#[cfg(test)]
use super::evtx_chunks::used_bytes;
use super::evtx_chunks::{
    CHUNK_BYTES, CHUNK_HEADER_BYTES, ChunkWalker, FILE_HEADER_BYTES, Holes, RECORD_HEADER_BYTES,
};
use super::json::evtx_dump;
use crate::events::json_lines::spawn;
use crate::events::{Origin, Position, Record, RecordError, RejectReason, Skipped, SourceFormat};
use crate::in_order::InOrder;

/// The records of a binary EVTX file, chunk by chunk. The thread that reads the file reads
/// its chunks (in the evtx crate's order: oldest first, dirty ones too) and checks them; a
/// file of several chunks read with more than one job has them parsed, rendered and
/// normalized by workers, at most two per worker in memory at a time, and their records
/// come back in chunk order.
pub(in crate::events) struct EvtxRecords<R: Read + Seek> {
    name: Arc<str>,
    chunks: ChunkWalker<R>,
    parsing: Arc<ChunkParsing>,
    chunk_number: u64,
    last_record_id: u64,
    /// Bytes past the last whole chunk: a file cut inside a chunk, whose records are lost.
    partial_chunk_bytes: u64,
    /// Workers for the chunks, when the file has several and there are jobs for them.
    jobs: usize,
    workers: Option<Workers>,
}

/// The crate's settings: `#attributes` as evtx_dump writes them. The crate is built without
/// its threads (the chunks of a file are spread over workers here), and asked for a number of
/// them it logs a warning for every file.
fn parser_settings() -> ParserSettings {
    ParserSettings::new().separate_json_attributes(false)
}

/// Files of fewer chunks are parsed on the reading thread: workers would cost more.
const PARALLEL_CHUNKS: u64 = 4;

/// How the chunks of one file are parsed.
struct ChunkParsing {
    name: Arc<str>,
    settings: Arc<ParserSettings>,
    /// Whether every record is rendered, including those whose kind its binary XML tells
    /// (`--parse-all`).
    render_all: bool,
}

/// What parsing one chunk gives: its records by record id, and failures whose place the
/// reader names (after the last record read).
#[derive(Debug)]
enum Parsed {
    Record(u64, Record),
    Failed(String),
    /// The file ends inside a chunk.
    Truncated(String),
}

/// The chunk parsing workers of one file.
struct Workers {
    work: Option<SyncSender<(u64, u64, EvtxChunkData)>>,
    /// For failures found on the reading thread, put in order with the workers' results.
    failures: Sender<(u64, std::thread::Result<Vec<Parsed>>)>,
    /// What each chunk gave, or the panic of the worker that parsed it.
    results: InOrder<std::thread::Result<Vec<Parsed>>>,
    handed_out: u64,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl<R: Read + Seek> EvtxRecords<R> {
    /// Opens an EVTX stream; `Err` with the parser's message when its header is bad. With
    /// `jobs` above one, a file of several chunks is parsed on that many workers. Chunks in
    /// the stream's `holes` are empty without being read. With `render_all`, records that
    /// are not process creations are rendered too, not told by their binary XML.
    pub(in crate::events) fn new(
        name: Arc<str>,
        mut stream: R,
        holes: Holes,
        jobs: usize,
        render_all: bool,
    ) -> Result<Self, String> {
        let size =
            stream.seek(SeekFrom::End(0)).and_then(|size| stream.seek(SeekFrom::Start(0)).map(|_| size));
        let size = size.map_err(|e| e.to_string())?;
        let settings = parser_settings();
        // The crate reads and checks the file header; the chunks are walked as it walks them.
        let header_block = EvtxParser::from_read_seek(&mut stream)
            .map(|parser| u64::from(parser.header().header_block_size))
            .map_err(|e| e.to_string())?;
        let mut chunks = ChunkWalker::new(stream, holes, header_block, size);
        let chunk_bytes = CHUNK_BYTES as u64;
        let chunks_in_file = size.saturating_sub(FILE_HEADER_BYTES) / chunk_bytes;
        let jobs = if chunks_in_file >= PARALLEL_CHUNKS { jobs } else { 1 };
        if jobs == 1 {
            // Chunks parsed on this thread can be read whole later, when their part before
            // the free space does not tell all their records.
            chunks.read_partially();
        }
        Ok(Self {
            parsing: Arc::new(ChunkParsing { name: name.clone(), settings: Arc::new(settings), render_all }),
            name,
            chunks,
            chunk_number: 0,
            last_record_id: 0,
            partial_chunk_bytes: size.saturating_sub(FILE_HEADER_BYTES) % chunk_bytes,
            jobs,
            workers: None,
        })
    }

    fn origin(&self, record_id: u64) -> Origin {
        Origin { file: self.name.clone(), position: Position::Record(record_id) }
    }

    /// The next chunk as the file gives it: its number and data, a failure to read it, or
    /// (at the end) the report of a chunk the file cuts short.
    fn read_next(&mut self) -> Option<Result<(u64, EvtxChunkData), Vec<Parsed>>> {
        let Some(chunk) = self.chunks.next() else {
            if self.partial_chunk_bytes == 0 {
                return None;
            }
            let message = format!(
                "the file ends inside chunk {}: {} of its {CHUNK_BYTES} bytes are there, and its records are lost",
                self.chunk_number + 1,
                std::mem::take(&mut self.partial_chunk_bytes),
            );
            return Some(Err(vec![Parsed::Truncated(message)]));
        };
        self.chunk_number += 1;
        Some(match chunk {
            Ok(data) => Ok((self.chunk_number, data)),
            Err(e) => Err(vec![Parsed::Failed(format!("chunk {}: {e}", self.chunk_number))]),
        })
    }

    /// A failure, placed after the last record read.
    fn reject(&self, reason: RejectReason) -> Record {
        Record::Rejected(RecordError { origin: self.origin(self.last_record_id + 1), reason })
    }

    /// Records from what parsing a chunk gave, failures placed after the last record read.
    fn place(&mut self, parsed: Vec<Parsed>) -> Vec<Record> {
        parsed
            .into_iter()
            .map(|parsed| match parsed {
                Parsed::Record(id, record) => {
                    self.last_record_id = id;
                    record
                }
                Parsed::Failed(message) => self.reject(RejectReason::MalformedEvtx(message)),
                Parsed::Truncated(message) => self.reject(RejectReason::Truncated(message)),
            })
            .collect()
    }

    /// The next chunk's records, parsed on this thread.
    fn next_here(&mut self) -> Option<Vec<Record>> {
        let parsed = match self.read_next()? {
            Ok((number, data)) if data.data.len() < CHUNK_BYTES => {
                match parse_partial_chunk(&self.parsing, data) {
                    Ok(parsed) => parsed,
                    Err(partial) => match self.chunks.complete(*partial) {
                        Ok(whole) => parse_chunk(&self.parsing, number, whole),
                        Err(e) => vec![Parsed::Failed(format!("chunk {number}: {e}"))],
                    },
                }
            }
            Ok((number, data)) => parse_chunk(&self.parsing, number, data),
            Err(failed) => failed,
        };
        Some(self.place(parsed))
    }

    /// The next chunk's records, parsed by the workers (started on the first call).
    fn next_from_workers(&mut self) -> Option<Vec<Record>> {
        let mut workers = match self.workers.take() {
            Some(workers) => workers,
            None => Workers::start(self.parsing.clone(), self.jobs),
        };
        // Keep every worker busy with up to two chunks.
        while workers.work.is_some() && workers.handed_out - workers.results.taken() < 2 * self.jobs as u64 {
            let seq = workers.handed_out;
            match self.read_next() {
                None => workers.work = None,
                Some(Ok((number, data))) => {
                    workers.handed_out += 1;
                    let work = workers.work.as_ref().expect("checked by the loop");
                    if work.send((seq, number, data)).is_err() {
                        workers.work = None;
                    }
                }
                Some(Err(failed)) => {
                    workers.handed_out += 1;
                    let _ = workers.failures.send((seq, Ok(failed)));
                }
            }
        }
        let parsed =
            if workers.results.taken() < workers.handed_out { workers.results.next_blocking() } else { None };
        self.workers = Some(workers);
        // A worker that panicked (a bug) ends the run where its chunk is taken in, as the
        // chunk would have on this thread, instead of leaving it waiting.
        let parsed = parsed?.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Some(self.place(parsed))
    }
}

impl Workers {
    fn start(parsing: Arc<ChunkParsing>, jobs: usize) -> Workers {
        let (work, queue) = sync_channel::<(u64, u64, EvtxChunkData)>(jobs);
        let (results_tx, results) = channel();
        let queue = Arc::new(Mutex::new(queue));
        let threads = (0..jobs)
            .map(|_| {
                let (queue, results, parsing) = (queue.clone(), results_tx.clone(), parsing.clone());
                spawn("rulehost-evtx", move || {
                    while let Ok(Ok((seq, number, data))) = queue.lock().map(|q| q.recv()) {
                        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            parse_chunk(&parsing, number, data)
                        }));
                        let failed = parsed.is_err();
                        if results.send((seq, parsed)).is_err() || failed {
                            return;
                        }
                    }
                })
            })
            .collect();
        Workers {
            work: Some(work),
            failures: results_tx,
            results: InOrder::new(results),
            handed_out: 0,
            threads,
        }
    }
}

impl Drop for Workers {
    /// Ends the workers: no more work, and each finishes the chunk it holds.
    fn drop(&mut self) {
        self.work = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Parses, renders and normalizes one chunk (`number`, counted from 1 in reading order).
fn parse_chunk(parsing: &ChunkParsing, number: u64, mut data: EvtxChunkData) -> Vec<Parsed> {
    let ChunkParsing { name, settings, render_all } = parsing;
    let (first, last) = (data.header.first_event_record_id, data.header.last_event_record_id);
    let mut parsed = match data.parse(settings.clone()) {
        Ok(parsed) => parsed,
        Err(e) => {
            let lost = last.saturating_sub(first) + 1;
            return vec![Parsed::Failed(format!(
                "chunk {number}: {e}; its {lost} records ({first} to {last}) are lost"
            ))];
        }
    };
    let mut records = Vec::new();
    let mut reader = RecordReader::default();
    let origin = |id| Origin { file: name.clone(), position: Position::Record(id) };
    let read = |id, told| read_record(name, id, told);
    // The records are read from their binary XML first (`read_ahead`). At the first record
    // that is to be rendered, the crate walks the chunk from its start, and the records read
    // already are not read again.
    let mut told_ahead = Vec::new();
    if !render_all {
        let (told, all) = read_ahead(&parsed, &mut reader);
        if all {
            return told.into_iter().map(|(id, told)| read(id, told)).collect();
        }
        told_ahead = told.into_iter().map(Some).collect();
    }
    for (index, record) in parsed.iter().enumerate() {
        // The walks find the same records in the same order (the walk here gave up at the
        // first record it could not take as the crate does).
        let told = match (told_ahead.get_mut(index).and_then(Option::take), &record) {
            (Some(told), _) => Some(told),
            (None, Ok(record)) if !render_all => {
                reader.read(record).map(|told| (record.event_record_id, told))
            }
            (None, _) => None,
        };
        let process_creation = match told {
            Some((id, told @ (Told::Skipped(_) | Told::Event(_)))) => {
                records.push(read(id, told));
                continue;
            }
            Some((_, Told::ProcessCreation)) => true,
            None => false,
        };
        // Rendered as evtx_dump's JSON, which the dismissal scan reads: a record that is
        // plainly not a process creation is counted as skipped without a parse, as an
        // evtx_dump line is (the renderer's JSON is well formed, so nothing is lost).
        match record.and_then(|r| r.into_json_bytes()) {
            Ok(record) => {
                let (id, origin) = (record.event_record_id, origin(record.event_record_id));
                // (A process creation told by its binary XML is not scanned.)
                if !process_creation && let Some(kind) = super::dismiss(&record.data) {
                    records.push(Parsed::Record(id, Record::Skipped(Skipped { origin, kind })));
                    continue;
                }
                // Read straight from the rendered text; the general reader only for what
                // is not one evtx_dump record, to name what is wrong with it.
                let typed = match simdutf8::basic::from_utf8(&record.data) {
                    Ok(text) => super::json::read_evtx_dump(text, origin, SourceFormat::Evtx),
                    Err(_) => Err(origin),
                };
                let origin = match typed {
                    Ok(read) => {
                        records.push(Parsed::Record(id, read));
                        continue;
                    }
                    Err(origin) => origin,
                };
                match serde_json::from_slice::<Value>(&record.data) {
                    Ok(Value::Object(root)) => {
                        records.push(Parsed::Record(id, evtx_dump(&root, origin, SourceFormat::Evtx)))
                    }
                    Ok(_) => records
                        .push(Parsed::Failed(format!("chunk {number}: a record that is not an element"))),
                    Err(e) => records.push(Parsed::Failed(format!("chunk {number}: the record's JSON: {e}"))),
                }
            }
            Err(e) => records.push(Parsed::Failed(format!("chunk {number}: {e}"))),
        }
    }
    records
}

/// A record read from its binary XML (a kind skipped or a process creation), as parsing it
/// gives it.
fn read_record(file: &Arc<str>, id: u64, told: Told) -> Parsed {
    let origin = Origin { file: file.clone(), position: Position::Record(id) };
    match told {
        Told::Skipped(kind) => Parsed::Record(id, Record::Skipped(Skipped { origin, kind })),
        Told::Event(event) => Parsed::Record(id, super::normalize(event, origin, SourceFormat::Evtx)),
        Told::ProcessCreation => unreachable!("a record to render is not read"),
    }
}

/// The chunk's records read from their binary XML, found by walking the chunk as the crate
/// walks it ([`live_records`]), up to the first that is to be rendered; and whether that was
/// all of them. The crate builds each record's tree as it gives it, about a seventh of the
/// reading threads' time, and a record read here does not need one.
fn read_ahead(chunk: &EvtxChunk<'_>, reader: &mut RecordReader) -> (Vec<(u64, Told)>, bool) {
    let Some(live) = live_records(chunk) else { return (Vec::new(), false) };
    let count = live.len();
    let mut told = Vec::with_capacity(count);
    for (id, binxml) in live {
        match reader.read_at(chunk.data, binxml) {
            Some(record @ (Told::Skipped(_) | Told::Event(_))) => told.push((id, record)),
            _ => return (told, false),
        }
    }
    (told, true)
}

/// A chunk of which only the part before its free space was read ([`ChunkWalker`]'s partial
/// reads): its records when every one is read from its binary XML within that part, else
/// the chunk back, to be read whole and parsed as [`parse_chunk`] parses it. Nothing past
/// the part read is looked at: a read past it fails here, and the whole chunk decides.
fn parse_partial_chunk(
    parsing: &ChunkParsing,
    mut data: EvtxChunkData,
) -> Result<Vec<Parsed>, Box<EvtxChunkData>> {
    if parsing.render_all {
        return Err(Box::new(data));
    }
    let told = match data.parse(parsing.settings.clone()) {
        // The chunk's string table read as the whole chunk's is (a name past the part read
        // fails here, and the whole chunk is read).
        Ok(parsed) => match read_ahead(&parsed, &mut RecordReader::default()) {
            (told, true) => Some(told),
            _ => None,
        },
        Err(_) => None,
    };
    match told {
        Some(told) => Ok(told.into_iter().map(|(id, told)| read_record(&parsing.name, id, told)).collect()),
        None => Err(Box::new(data)),
    }
}

/// The chunk's live records as the crate's walk over them finds them (`EvtxChunk::iter`, not
/// carving): from the chunk header on, each record where the one before ends, up to the free
/// space or the chunk's last record; each record's id and where its binary XML lies. `None`
/// at the first record whose header or size the walk cannot take: the crate reports it and
/// searches on, which is left to it.
fn live_records(chunk: &EvtxChunk<'_>) -> Option<Vec<(u64, Range<usize>)>> {
    let data = chunk.data;
    let live_end = (chunk.header.free_space_offset as usize).min(data.len());
    let mut records = Vec::new();
    let mut offset = CHUNK_HEADER_BYTES;
    while offset < live_end {
        let header = EvtxRecordHeader::from_bytes_at(data, offset).ok()?;
        let start = offset + RECORD_HEADER_BYTES;
        let end = start.checked_add(header.record_data_size().ok()? as usize)?;
        if end > data.len() {
            return None;
        }
        records.push((header.event_record_id, start..end));
        if header.event_record_id == chunk.header.last_event_record_id {
            break;
        }
        offset = offset.checked_add(header.data_size as usize)?;
    }
    Some(records)
}

/// The records of each chunk (and, at the end, the report of a chunk the file cuts short).
impl<R: Read + Seek> Iterator for EvtxRecords<R> {
    type Item = Vec<Record>;

    fn next(&mut self) -> Option<Vec<Record>> {
        if self.jobs > 1 { self.next_from_workers() } else { self.next_here() }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::super::evtx_binxml::forget_seen_templates;
    use super::*;

    /// The chunks of every shared EVTX file, as the walk gives them.
    fn shared_chunks() -> Vec<(String, Vec<u8>)> {
        let dir = super::super::tests_shared_dir().join("evtx");
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.retain(|p| p.extension().is_some_and(|e| e == "evtx"));
        files.sort();
        assert!(files.len() >= 10, "the shared EVTX files are there");
        let mut chunks = Vec::new();
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            let size = bytes.len() as u64;
            let walker = ChunkWalker::new(Cursor::new(bytes), Holes::unknown(), FILE_HEADER_BYTES, size);
            for (n, chunk) in walker.enumerate() {
                chunks.push((format!("{} chunk {n}", file.display()), chunk.unwrap().data));
            }
        }
        chunks
    }

    /// What parsing `chunk` gives, told from binary XML where it can or rendered whole.
    fn parsed(chunk: &[u8], render_all: bool) -> Option<Vec<String>> {
        let parsing =
            ChunkParsing { name: "t.evtx".into(), settings: Arc::new(parser_settings()), render_all };
        let data = EvtxChunkData::new(chunk.to_vec(), false).ok()?;
        Some(parse_chunk(&parsing, 1, data).iter().map(|p| format!("{p:?}")).collect())
    }

    /// How many records of `chunk` their binary XML tells as skipped, and as events.
    fn told(chunk: &[u8]) -> (usize, usize) {
        let mut data = EvtxChunkData::new(chunk.to_vec(), false).unwrap();
        let mut parsed = data.parse(Arc::new(parser_settings())).unwrap();
        let mut reader = RecordReader::default();
        let told: Vec<_> = parsed.iter().filter_map(Result::ok).filter_map(|r| reader.read(&r)).collect();
        let skipped = told.iter().filter(|t| matches!(t, Told::Skipped(_))).count();
        (skipped, told.iter().filter(|t| matches!(t, Told::Event(_))).count())
    }

    /// A copy of `chunk` with one to four bytes of its records and templates (past its
    /// header, before its free space) drawn anew.
    fn damaged_past_its_header(chunk: &[u8], next: &mut impl FnMut(usize) -> usize) -> Vec<u8> {
        let used = u32::from_le_bytes(chunk[48..52].try_into().unwrap()) as usize;
        let mut damaged = chunk.to_vec();
        for _ in 0..1 + next(4) {
            let at = 512 + next(used.clamp(513, CHUNK_BYTES) - 512);
            damaged[at] = next(256) as u8;
        }
        damaged
    }

    #[test]
    fn records_told_by_their_binary_xml_are_what_rendering_them_gives() {
        let (mut records, mut skipped, mut told_skipped, mut told_events) = (0, 0, 0, 0);
        for (name, chunk) in shared_chunks() {
            let rendered = parsed(&chunk, true).unwrap();
            assert_eq!(parsed(&chunk, false).unwrap(), rendered, "{name}");
            records += rendered.len();
            skipped += rendered.iter().filter(|r| r.contains("Skipped(")).count();
            let (kinds, events) = told(&chunk);
            told_skipped += kinds;
            told_events += events;
        }
        // Every record of these files is read from its binary XML, not rendered: those of a
        // skipped kind, and the process creations.
        assert_eq!((records, told_skipped, told_events), (235, skipped, records - skipped));
    }

    #[test]
    fn a_chunk_read_up_to_its_free_space_gives_what_the_whole_chunk_gives() {
        // Every shared chunk, and copies damaged anywhere (the header's free space and last
        // record too, and past the free space), one to four bytes at a time.
        let mut draw = crate::events::drawn(0x9e37_79b9_7f4a_7c15u64);
        let mut next = move |below: usize| draw(below as u64) as usize;
        let (mut compared, mut read_partially) = (0, 0);
        for (name, chunk) in shared_chunks() {
            let mut copies = vec![chunk.clone()];
            for _ in 0..300 {
                let mut damaged = chunk.clone();
                for _ in 0..1 + next(4) {
                    let at = if next(4) == 0 { 32 + next(24) } else { next(CHUNK_BYTES) };
                    damaged[at] = next(256) as u8;
                }
                copies.push(damaged);
            }
            for copy in copies {
                let Some(used) = used_bytes(&copy) else { continue };
                let Ok(short) = EvtxChunkData::new(copy[..used].to_vec(), false) else { continue };
                let parsing = ChunkParsing {
                    name: "t.evtx".into(),
                    settings: Arc::new(parser_settings()),
                    render_all: false,
                };
                let whole = parsed(&copy, false).expect("its header is read");
                let partial = match parse_partial_chunk(&parsing, short) {
                    Ok(records) => {
                        read_partially += 1;
                        records.iter().map(|p| format!("{p:?}")).collect()
                    }
                    Err(_) => whole.clone(),
                };
                assert_eq!(partial, whole, "{name}");
                compared += 1;
            }
        }
        assert!(compared > 3000, "{compared}");
        // Most copies are read up to their free space; those whose records or names lie
        // past it, or that the crate would render, are read whole.
        assert!(read_partially * 2 > compared && read_partially < compared, "{read_partially} of {compared}");
    }

    #[test]
    fn a_template_is_taken_from_an_earlier_chunk_only_where_that_chunk_held_the_same_bytes() {
        // Each shared chunk read, then copies of it damaged in its records, templates and the
        // names they link to, one to four bytes at a time: each copy is read as a thread that
        // has read no chunk before reads it.
        let mut draw = crate::events::drawn(0x6a09_e667_f3bc_c908u64);
        let mut next = move |below: usize| draw(below as u64) as usize;
        let (mut compared, mut taken) = (0, 0);
        for (name, chunk) in shared_chunks() {
            for _ in 0..200 {
                let damaged = damaged_past_its_header(&chunk, &mut next);
                forget_seen_templates();
                let fresh = parsed(&damaged, false);
                forget_seen_templates();
                parsed(&chunk, false);
                let after_the_chunk = parsed(&damaged, false);
                taken += forget_seen_templates();
                assert_eq!(after_the_chunk, fresh, "{name}");
                compared += 1;
            }
        }
        assert!(compared >= 3000, "{compared}");
        // Templates the damage left alone are taken.
        assert!(taken > compared, "{taken} of {compared}");
    }

    #[test]
    fn damaged_records_are_told_as_rendering_them_gives_where_it_does_not_fail() {
        // Bytes of the records and templates changed, one to four at a time; a small
        // generator keeps the cases the same from run to run.
        let mut draw = crate::events::drawn(0x2545_f491_4f6c_dd1du64);
        let mut next = move |below: usize| draw(below as u64) as usize;
        let (mut compared, mut differ, mut read_where_refused) = (0, Vec::new(), 0);
        for (name, chunk) in shared_chunks() {
            for _ in 0..500 {
                let damaged = damaged_past_its_header(&chunk, &mut next);
                let (Some(told), Some(rendered)) = (parsed(&damaged, false), parsed(&damaged, true)) else {
                    continue;
                };
                compared += 1;
                if told.len() != rendered.len() {
                    differ.push(format!("{name}: {told:?}\n  vs {rendered:?}"));
                    continue;
                }
                for (told, rendered) in told.iter().zip(&rendered) {
                    // What a record read from its binary XML leaves unchecked is whether the
                    // rest of it would parse and render: a record whose template or values are
                    // damaged where it does not read them is read, where the crate refuses it.
                    let refused = rendered
                        .strip_prefix("Failed(\"chunk 1: Failed to parse record number ")
                        .and_then(|rest| rest.strip_suffix("\")"));
                    if told != rendered
                        && !refused.is_some_and(|id| told.starts_with(&format!("Record({id}, ")))
                    {
                        differ.push(format!("{name}: {told}\n  vs {rendered}"));
                    }
                    read_where_refused += usize::from(told != rendered);
                }
            }
        }
        assert!(compared > 8000, "{compared}");
        assert!(differ.is_empty(), "{} of {compared} differ:\n{}", differ.len(), differ.join("\n"));
        // Such records are drawn: the damage lay outside what they are read for.
        assert!(read_where_refused > 0, "no damage outside what is read was drawn");
    }
}
