//! JSON lines, read on the calling thread or by parsing workers (the records in input
//! order whatever their number): a line's dismissal by its `EventID`, its parse, and the
//! chunking of a stream into whole lines.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;

use serde_json::Value;

use super::{
    Origin, Position, Record, RecordError, RejectReason, Skipped, SourceFormat, defender, json, windows,
};
use crate::in_order::InOrder;

/// A byte order mark: a line drops its own.
pub(super) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// How JSON lines are parsed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    /// Threads that parse (1: the reading thread parses).
    pub(super) jobs: usize,
    /// Parse every line in full, dismissing none by its `EventID` first.
    pub(super) parse_all: bool,
    /// Bytes of a regular file that a worker reads at once (its last line read on to its
    /// end): enough that the hand-off is cheap, little enough that it stays in the core's
    /// cache while it is parsed.
    pub(super) block_bytes: u64,
    /// Hand a chunk to the parsing workers as soon as a read delivers less than it asked
    /// for and a line has ended (a live stream), not only once it is full.
    pub(super) low_latency: bool,
    /// Whether the stream has bytes to read within a moment, when that can be asked (a
    /// pipe): a live stream is then read on the reading thread itself, its chunk cut when
    /// nothing comes for that moment, rather than through a thread of its own.
    pub(super) ready_soon: Option<fn() -> bool>,
}

impl Default for Reading {
    fn default() -> Self {
        Self {
            jobs: 1,
            parse_all: false,
            block_bytes: CHUNK_BYTES as u64,
            low_latency: false,
            ready_soon: None,
        }
    }
}

/// JSON lines: one record (or a `{"records": [..]}` of several) per line.
pub(super) struct JsonLines<R> {
    name: Arc<str>,
    stream: R,
    line: u64,
    /// Where the next line starts.
    offset: u64,
    buffer: Vec<u8>,
    /// Set after a read error: the line that failed is the last.
    done: bool,
    parse_all: bool,
}

impl<R: BufRead> JsonLines<R> {
    pub(super) fn new(name: Arc<str>, stream: R, parse_all: bool) -> Self {
        Self { name, stream, line: 0, offset: 0, buffer: Vec::new(), done: false, parse_all }
    }

    fn origin(&self) -> Origin {
        Origin { file: self.name.clone(), position: Position::Line(self.line) }
    }

    /// Reads lines until one holds records; `None` at the end of the input.
    fn read_line(&mut self) -> Option<Vec<Record>> {
        loop {
            self.buffer.clear();
            self.line += 1;
            let start = self.offset;
            let limit = MAX_LINE_BYTES as u64 + 1;
            match (&mut self.stream).take(limit).read_until(b'\n', &mut self.buffer) {
                Ok(0) => return None,
                Ok(n) => self.offset += n as u64,
                Err(e) => {
                    self.done = true;
                    let reason = RejectReason::Truncated(format!("read error: {e}"));
                    return Some(vec![Record::Rejected(RecordError { origin: self.origin(), reason })]);
                }
            }
            if self.buffer.len() > MAX_LINE_BYTES && !self.buffer.ends_with(b"\n") {
                let reason = match pass_over_line(&mut self.stream) {
                    Ok((passed, ended)) => {
                        self.offset += passed;
                        // Its length, without the newline that ended it.
                        RejectReason::TooLong {
                            unit: "line",
                            bytes: self.buffer.len() as u64 + passed - u64::from(!ended),
                        }
                    }
                    Err(e) => {
                        self.done = true;
                        RejectReason::Truncated(format!("read error: {e}"))
                    }
                };
                self.buffer = Vec::new();
                return Some(vec![Record::Rejected(RecordError { origin: self.origin(), reason })]);
            }
            let complete = self.buffer.ends_with(b"\n");
            if self.buffer.trim_ascii().is_empty() {
                continue;
            }
            let mut records = Vec::with_capacity(1);
            parse_json_line(&self.buffer, complete, self.parse_all, self.origin(), &mut records);
            set_line_offset(&mut records, start);
            return Some(records);
        }
    }
}

/// Notes where their line starts in the events of `records`.
pub(super) fn set_line_offset(records: &mut [Record], offset: u64) {
    for record in records {
        if let Record::Event(event) = record {
            event.set_line_offset(offset);
        }
    }
}

/// Parses one JSON line (`line` may end with its newline) into its records. Unless
/// `parse_all`, a whole line that a scan shows to be a Windows event of another kind is
/// dismissed without a parse.
/// What the dismissal scan makes of one complete JSON line (the kind it counts it as
/// skipped under, if it dismisses it), and what the full parse makes of it. The scan must
/// never dismiss a line that the full parse evaluates, and must name the kind the full parse
/// names; the fuzz targets and tests check it.
pub fn dismissal_and_full_parse(line: &[u8]) -> (Option<String>, Vec<Record>) {
    let scanned = windows::dismiss(line.trim_ascii().strip_prefix(UTF8_BOM).unwrap_or(line.trim_ascii()));
    let origin = Origin { file: "-".into(), position: Position::Line(1) };
    let mut parsed = Vec::new();
    parse_json_line(line, true, true, origin, &mut parsed);
    (scanned, parsed)
}

/// What the typed read of one evtx_dump line makes of it (`None` when it leaves the line to
/// the general reader), and what the general reader makes of it: where the typed read takes
/// a line, the two must give the same record; the fuzz targets and tests check it.
pub fn typed_and_general_read(line: &[u8]) -> (Option<Record>, Vec<Record>) {
    let origin = || Origin { file: "-".into(), position: Position::Line(1) };
    let typed = std::str::from_utf8(line)
        .ok()
        .and_then(|text| windows::json::read_evtx_dump(text, origin(), SourceFormat::EvtxJson).ok());
    let mut general = Vec::new();
    match serde_json::from_slice::<Value>(line) {
        Ok(value) => json::read_value(value, &origin, SourceFormat::DefenderJson, true, &mut general),
        Err(e) => general.push(Record::Rejected(RecordError {
            origin: origin(),
            reason: RejectReason::MalformedJson(e.to_string()),
        })),
    }
    (typed, general)
}

pub(crate) fn parse_json_line(
    line: &[u8],
    complete: bool,
    parse_all: bool,
    origin: Origin,
    out: &mut Vec<Record>,
) {
    // A byte order mark (Windows tools write one at the start of a file, and concatenated
    // files carry it on) is not part of the JSON.
    let line = line.trim_ascii();
    let line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
    if complete
        && !parse_all
        && let Some(kind) = windows::dismiss(line)
    {
        out.push(Record::Skipped(Skipped { origin, kind }));
        return;
    }
    let text = std::str::from_utf8(line);
    let origin = match text {
        Ok(text) => match defender::read_flat_row(text, origin) {
            Ok(record) => {
                out.push(record);
                return;
            }
            // evtx_dump's records are read straight from the line, as Defender rows are.
            Err(origin) if text.starts_with("{\"Event\"") => {
                match windows::json::read_evtx_dump(text, origin, SourceFormat::EvtxJson) {
                    Ok(record) => {
                        out.push(record);
                        return;
                    }
                    Err(origin) => origin,
                }
            }
            Err(origin) => origin,
        },
        Err(_) => origin,
    };
    // Text known to be UTF-8 is parsed as such (its strings are not checked again).
    let value = match text.map_or_else(|_| serde_json::from_slice::<Value>(line), serde_json::from_str) {
        Ok(value) => value,
        Err(e) => {
            let reason = if text.is_err() {
                RejectReason::InvalidUtf8
            } else if e.is_eof() && !complete {
                RejectReason::Truncated(format!("the input ends inside a JSON value ({e})"))
            } else {
                RejectReason::MalformedJson(e.to_string())
            };
            out.push(Record::Rejected(RecordError { origin, reason }));
            return;
        }
    };
    json::read_value(value, &|| origin.clone(), SourceFormat::DefenderJson, true, out);
}

/// Bytes handed to a parsing worker at once (whole lines; more when one line is longer):
/// enough that the hand-off is cheap, little enough that the queues hold little.
pub(super) const CHUNK_BYTES: usize = 1 << 20;
/// Room for one read at least.
const READ_BYTES: usize = 64 * 1024;

/// The longest line read as a record. A real record is a few KiB (an evtx_dump record holds
/// at most a 64 KiB chunk's worth; an Event Hubs message is at most 1 MiB); a longer line is
/// passed over to its end, read in pieces and never held whole, and rejected with its
/// length: one line of gigabytes once took twice its size in memory.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Reads `stream` on to the end of a line (its newline consumed) and tells how many bytes
/// that was, newline included, and whether the stream ended first: the rest of a line too
/// long to hold, passed over in the stream's own buffer.
fn pass_over_line(stream: &mut impl BufRead) -> io::Result<(u64, bool)> {
    let mut passed = 0u64;
    loop {
        let buffer = match stream.fill_buf() {
            Ok(buffer) => buffer,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buffer.is_empty() {
            return Ok((passed, true));
        }
        let (used, ended) = match memchr::memchr(b'\n', buffer) {
            Some(at) => (at + 1, true),
            None => (buffer.len(), false),
        };
        stream.consume(used);
        passed += used as u64;
        if ended {
            return Ok((passed, false));
        }
    }
}

/// The kernel copies a file's (or a pipe's) bytes to us several times faster when the
/// buffer's address and the stream's position agree modulo the page size: measured here,
/// 1 MiB reads took 0.15 ms with them in agreement against 0.5-0.7 ms with the buffer one
/// or sixteen bytes ahead. Readers place what they read where they agree.
pub(super) const PAGE_BYTES: usize = 4096;

/// Where in `buffer` (below [`PAGE_BYTES`]) to put the byte at `position` of a file or stream
/// so that its address and its position agree modulo the page.
pub(super) fn page_lead(buffer: &[u8], position: u64) -> usize {
    (position as usize).wrapping_sub(buffer.as_ptr() as usize) % PAGE_BYTES
}

/// Whole lines read by the reader thread for a worker.
struct Chunk {
    seq: u64,
    /// The chunk's bytes are `bytes[start..]` (see [`PAGE_BYTES`] for why they may not
    /// start at the front).
    bytes: Vec<u8>,
    start: usize,
    /// Where the chunk starts in the input.
    offset: u64,
    /// Whether the input ended after these bytes (its last line may lack a newline).
    last: bool,
    /// A read error after the chunk's lines.
    error: Option<String>,
    /// A line after the chunk's lines too long to read, and its length.
    too_long: Option<u64>,
}

impl Chunk {
    fn lines(&self) -> Lines<'_> {
        Lines {
            bytes: &self.bytes[self.start..],
            offset: self.offset,
            last: self.last,
            error: self.error.as_deref(),
            too_long: self.too_long,
        }
    }
}

/// Whole lines of an input, to parse.
pub(super) struct Lines<'a> {
    pub(super) bytes: &'a [u8],
    /// Where they start in the input.
    pub(super) offset: u64,
    /// Whether the input ended after them (the last may lack a newline).
    pub(super) last: bool,
    /// A read error after them.
    pub(super) error: Option<&'a str>,
    /// The length of a line after them too long to read ([`MAX_LINE_BYTES`]): passed over.
    pub(super) too_long: Option<u64>,
}

/// JSON lines of a stream parsed by worker threads, the records coming out in input order
/// whatever the number of workers (a regular file is read by the workers themselves: see
/// [`super::blocks`]). One thread reads the stream in chunks cut at a line's end, the
/// workers cut and parse the lines of a chunk. Memory stays bounded: at most two chunks
/// per worker are queued or waiting to be put back in order.
///
/// The reader does not count lines (a pass over every byte, on the one thread that all
/// the input goes through): each worker counts its chunk's, in chunk order, as block
/// readers do ([`LineNumbers`]).
pub(super) struct ParallelJsonLines {
    results: InOrder<Vec<Record>>,
    /// The reading thread and the workers, joined once the last record is out: none
    /// outlives the input it read.
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ParallelJsonLines {
    /// Lines of `stream`, read by a thread of their own.
    pub(super) fn of_stream(
        name: Arc<str>,
        stream: BufReader<impl Read + Send + 'static>,
        reading: Reading,
    ) -> Self {
        let jobs = reading.jobs;
        let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Chunk>(jobs * 2);
        let (results_tx, results) = std::sync::mpsc::sync_channel(jobs * 2);
        let (spent_tx, spent) = std::sync::mpsc::sync_channel(jobs * 2);
        let mut threads =
            vec![spawn("rulehost-read", move || read_chunks(stream, &work_tx, &spent, reading))];
        let (work, numbers) = (Arc::new(std::sync::Mutex::new(work_rx)), Arc::new(LineNumbers::default()));
        for _ in 0..jobs {
            let (work, results_tx, spent_tx, name, numbers) =
                (work.clone(), results_tx.clone(), spent_tx.clone(), name.clone(), numbers.clone());
            threads.push(spawn("rulehost-parse", move || {
                while let Ok(Ok(chunk)) = work.lock().map(|queue| queue.recv()) {
                    let records = numbers.parse(&name, chunk.seq, chunk.lines(), reading.parse_all);
                    // When the reader has enough spare buffers, this one is freed.
                    let _ = spent_tx.try_send(chunk.bytes);
                    if results_tx.send((chunk.seq, records)).is_err() {
                        return;
                    }
                }
            }));
        }
        Self { results: InOrder::new(results), threads }
    }
}

/// Starts a named thread (names show in `top -H` and profiles).
pub(super) fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new().name(name.to_owned()).spawn(body).expect("a thread can be started")
}

/// Reads `stream` in chunks of whole lines and sends them to the workers, until the end,
/// a read error, or no worker is left. Bytes go from the stream straight into the chunk,
/// whose buffer comes back from the workers to be filled again (`spent`).
fn read_chunks(
    mut stream: BufReader<impl Read + Send + 'static>,
    work: &std::sync::mpsc::SyncSender<Chunk>,
    spent: &std::sync::mpsc::Receiver<Vec<u8>>,
    reading: Reading,
) {
    let mut carry: Vec<u8> = stream.buffer().to_vec();
    stream.consume(carry.len());
    let ready_soon = reading.ready_soon.filter(|_| reading.low_latency);
    let mut stream: Box<dyn Read> = match reading.low_latency && ready_soon.is_none() {
        true => Box::new(Pieces::of(stream.into_inner())),
        false => Box::new(stream.into_inner()),
    };
    let mut offset = 0;
    for seq in 0.. {
        let mut bytes = spent.try_recv().unwrap_or_default();
        // A spent buffer is already initialized up to its length: only growth is zeroed.
        bytes.resize(bytes.len().max(PAGE_BYTES + CHUNK_BYTES + carry.len() + READ_BYTES), 0);
        // Placed so that what is read next lands where the buffer's address and the
        // stream's position (`offset` plus the carried bytes, when the stream was read from
        // its start) agree modulo the page size, for the kernel's faster copy.
        let start = page_lead(&bytes, offset);
        bytes[start..start + carry.len()].copy_from_slice(&carry);
        let mut filled = start + carry.len();
        let (mut last, mut error) = (false, None);
        // Where the line being read starts, and the length of one passed over for its size.
        let (mut line_start, mut too_long) = (start, None);
        // Fill to CHUNK_BYTES, then on until a line ends.
        loop {
            if bytes.len() - filled < READ_BYTES {
                bytes.resize(bytes.len() * 2, 0);
            }
            match stream.read(&mut bytes[filled..]) {
                Ok(0) => {
                    last = true;
                    break;
                }
                Ok(n) => {
                    let before = filled;
                    filled += n;
                    let newline = memchr::memrchr(b'\n', &bytes[before..filled]);
                    if let Some(at) = newline {
                        line_start = before + at + 1;
                    }
                    if filled - line_start > MAX_LINE_BYTES {
                        let passed = pass_over_long_line(&mut *stream, &mut bytes[line_start..filled]);
                        too_long = Some(passed.length + (filled - line_start) as u64);
                        (last, error) = (passed.ended, passed.error);
                        filled = line_start;
                        carry.clear();
                        carry.extend_from_slice(&passed.after);
                        break;
                    }
                    // A live stream with nothing more ready: its lines so far are parsed now.
                    let enough = filled >= CHUNK_BYTES || ready_soon.is_some_and(|ready| !ready());
                    if enough && newline.is_some() {
                        break;
                    }
                }
                // A live stream that has delivered nothing more for a moment: its lines so
                // far are parsed now.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if memchr::memchr(b'\n', &bytes[start..filled]).is_some() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    (last, error) = (true, Some(e.to_string()));
                    break;
                }
            }
        }
        let end = if last || too_long.is_some() {
            filled
        } else {
            memchr::memrchr(b'\n', &bytes[start..filled]).map_or(start, |at| start + at + 1)
        };
        if too_long.is_none() {
            carry.clear();
            carry.extend_from_slice(&bytes[end..filled]);
        }
        bytes.truncate(end);
        // The line passed over, and its newline unless the input ended first.
        let passed = too_long.map_or(0, |length| length + u64::from(!last));
        let size = (end - start) as u64 + passed;
        let chunk = Chunk { seq, bytes, start, offset, last, error, too_long };
        offset += size;
        if work.send(chunk).is_err() || last {
            return;
        }
    }
}

/// What passing over the rest of a line too long to read found.
pub(super) struct PassedOver {
    /// Its bytes read past those already held, its newline not counted.
    pub(super) length: u64,
    /// What was read after its newline.
    pub(super) after: Vec<u8>,
    /// Whether the input ended (or failed) before a newline.
    pub(super) ended: bool,
    pub(super) error: Option<String>,
}

/// Reads `stream` on past the newline that ends a line too long to read, reading into
/// `scratch` (the line's start, whose bytes are not kept), so that it takes no more memory.
pub(super) fn pass_over_long_line(stream: &mut dyn Read, scratch: &mut [u8]) -> PassedOver {
    let mut length = 0;
    let room = READ_BYTES.min(scratch.len());
    let scratch = &mut scratch[..room];
    loop {
        match stream.read(scratch) {
            Ok(0) => return PassedOver { length, after: Vec::new(), ended: true, error: None },
            Ok(n) => match memchr::memchr(b'\n', &scratch[..n]) {
                Some(at) => {
                    let after = scratch[at + 1..n].to_vec();
                    return PassedOver { length: length + at as u64, after, ended: false, error: None };
                }
                None => length += n as u64,
            },
            // A live stream: wait on for the line's end.
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => {}
            Err(e) => {
                return PassedOver { length, after: Vec::new(), ended: true, error: Some(e.to_string()) };
            }
        }
    }
}

/// A stream read on a thread of its own, piece by piece as it delivers, for a reader that
/// must not wait in a blocking read while it holds lines: a read that finds no piece within
/// [`Pieces::IDLE`] fails with `WouldBlock`, and the next one waits again.
struct Pieces {
    pieces: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    /// Pieces read to their end go back to be filled again: no allocation, no zeroing.
    spent: std::sync::mpsc::SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    ended: bool,
}

impl Pieces {
    /// How long a stream may stay silent before what it delivered is taken as all for now.
    const IDLE: std::time::Duration = std::time::Duration::from_millis(2);
    /// Bytes read at most at once.
    const PIECE_BYTES: usize = 1 << 20;

    fn of(mut stream: impl Read + Send + 'static) -> Self {
        let (sender, pieces) = std::sync::mpsc::sync_channel(8);
        let (spent, spent_pieces) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        // Detached: it may be blocked in a read of standard input, which nothing can end.
        spawn("rulehost-read-stream", move || {
            loop {
                let mut piece = spent_pieces.try_recv().unwrap_or_default();
                // A spent piece is initialized up to its length: only growth is zeroed.
                piece.resize(Self::PIECE_BYTES, 0);
                let result = match stream.read(&mut piece) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(n) => {
                        piece.truncate(n);
                        Ok(piece)
                    }
                    Err(e) => Err(e),
                };
                let last = !matches!(&result, Ok(piece) if !piece.is_empty());
                if sender.send(result).is_err() || last {
                    return;
                }
            }
        });
        Self { pieces, spent, current: Vec::new(), at: 0, ended: false }
    }
}

impl Read for Pieces {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.pieces.recv_timeout(Self::IDLE) {
                Ok(Ok(piece)) => {
                    self.ended = piece.is_empty();
                    let done = std::mem::replace(&mut self.current, piece);
                    let _ = self.spent.try_send(done);
                    self.at = 0;
                }
                Ok(Err(error)) => {
                    self.ended = true;
                    return Err(error);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The records of `chunk`'s lines, in order, its first line numbered `first_line`.
fn parse_lines(name: &Arc<str>, chunk: Lines<'_>, first_line: u64, parse_all: bool) -> Vec<Record> {
    let mut records = Vec::with_capacity(chunk.bytes.len() / 512);
    let origin = |line| Origin { file: name.clone(), position: Position::Line(line) };
    let mut number = first_line;
    let mut start = 0;
    let mut parse = |start: usize, line: &[u8], number: u64, complete: bool| {
        // A line the reader held whole (it came in one read) is as long as one it passed over.
        let length = line.len() - usize::from(line.ends_with(b"\n"));
        if length > MAX_LINE_BYTES {
            let reason = RejectReason::TooLong { unit: "line", bytes: length as u64 };
            records.push(Record::Rejected(RecordError { origin: origin(number), reason }));
        } else if !line.trim_ascii().is_empty() {
            let first = records.len();
            parse_json_line(line, complete, parse_all, origin(number), &mut records);
            set_line_offset(&mut records[first..], chunk.offset + start as u64);
        }
    };
    for end in memchr::memchr_iter(b'\n', chunk.bytes) {
        parse(start, &chunk.bytes[start..=end], number, true);
        start = end + 1;
        number += 1;
    }
    // The input's last line, without a newline. When a read error cut it short, it is the
    // line the error rejects, as a reader of one line at a time rejects it: not one
    // truncated line and an error after it.
    if start < chunk.bytes.len() && chunk.error.is_none() {
        parse(start, &chunk.bytes[start..], number, !chunk.last);
        number += 1;
    }
    if let Some(bytes) = chunk.too_long {
        records.push(Record::Rejected(RecordError {
            origin: origin(number),
            reason: RejectReason::TooLong { unit: "line", bytes },
        }));
        number += 1;
    }
    if let Some(message) = chunk.error {
        let reason = RejectReason::Truncated(format!("read error: {message}"));
        records.push(Record::Rejected(RecordError { origin: origin(number), reason }));
    }
    records
}

/// Line numbers handed out chunk by chunk (or block by block) in input order: a worker
/// counts its chunk's lines and learns how many came before it once the chunk before has
/// counted its own. Chunks are taken from their queue in order, so the one before is
/// always being counted.
#[derive(Default)]
pub(super) struct LineNumbers {
    /// The next chunk to number, and the lines before it.
    state: std::sync::Mutex<(u64, u64)>,
    turn: std::sync::Condvar,
}

impl LineNumbers {
    /// Waits for chunk `seq`'s turn, numbers its `lines` and parses them.
    pub(super) fn parse(&self, name: &Arc<str>, seq: u64, lines: Lines<'_>, parse_all: bool) -> Vec<Record> {
        let count = memchr::memchr_iter(b'\n', lines.bytes).count() as u64
            + u64::from(lines.bytes.last().is_some_and(|&b| b != b'\n'))
            + u64::from(lines.too_long.is_some());
        let poisoned = std::sync::PoisonError::into_inner;
        let mut state = self.state.lock().unwrap_or_else(poisoned);
        while state.0 != seq {
            state = self.turn.wait(state).unwrap_or_else(poisoned);
        }
        let before = state.1;
        *state = (seq + 1, before + count);
        self.turn.notify_all();
        drop(state);
        parse_lines(name, lines, before + 1, parse_all)
    }
}

/// The records of each chunk, in input order.
impl Iterator for ParallelJsonLines {
    type Item = Vec<Record>;

    fn next(&mut self) -> Option<Vec<Record>> {
        let next = self.results.next_blocking();
        if next.is_none() {
            // Every worker has dropped its sender, so each is past its loop, and the reader
            // is done: joining takes no time.
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
        next
    }
}

/// The records of each line that holds any.
impl<R: BufRead> Iterator for JsonLines<R> {
    type Item = Vec<Record>;

    fn next(&mut self) -> Option<Vec<Record>> {
        if self.done { None } else { self.read_line() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streams_chunks_lie_where_their_address_and_their_position_agree_modulo_the_page() {
        let text: String = (0..300_000).map(|n| format!("{{\"line\":{n}}}\n")).collect();
        let (work, chunks) = std::sync::mpsc::sync_channel(64);
        let (_spent, spent) = std::sync::mpsc::sync_channel(1);
        let stream = BufReader::new(io::Cursor::new(text.clone().into_bytes()));
        read_chunks(stream, &work, &spent, Reading::default());
        drop(work);
        let mut read = Vec::new();
        for chunk in chunks.try_iter() {
            let address = chunk.bytes.as_ptr() as usize + chunk.start;
            assert_eq!(address % PAGE_BYTES, chunk.offset as usize % PAGE_BYTES, "chunk {}", chunk.seq);
            assert_eq!(chunk.offset as usize, read.len());
            read.extend_from_slice(&chunk.bytes[chunk.start..]);
        }
        assert!(read.len() > 3 * CHUNK_BYTES, "several chunks");
        assert_eq!(read, text.as_bytes());
    }
}
