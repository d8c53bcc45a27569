//! Inputs: files or standard input, their format told from the name or the first bytes,
//! read as a stream of [`Record`]s.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;
use serde_json::Value;

use super::blocks::{BlockFile, FileBlocks, Stage};
use super::json_documents::{self, is_record_header};
use super::json_lines::{
    JsonLines, PAGE_BYTES, ParallelJsonLines, Reading, parse_json_line, set_line_offset,
};
pub use super::json_lines::{dismissal_and_full_parse, typed_and_general_read};
use super::windows::evtx::EvtxRecords;
use super::windows::evtx_chunks::Holes;
use super::windows::xml::XmlEvents;

use super::{Origin, Position, Record, RecordError, RejectReason, defender};

/// How much of an input is read to tell its format: enough for the first line of any
/// realistic JSON lines file; a longer first line is taken as one JSON document.
const SNIFF_BYTES: usize = 1 << 20;
/// The first read of an input's prefix.
const FIRST_READ_BYTES: usize = 4096;

/// The format of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Tell from the file name, then from the first bytes.
    Auto,
    /// One JSON value per line: Defender rows or streaming records, Windows events in any
    /// JSON shape.
    Jsonl,
    /// JSON documents: an Advanced Hunting API response, `{"records": [..]}`, an array,
    /// or evtx_dump's output (objects one after another, `Record N` lines between).
    Json,
    /// CSV with a header row of column names.
    Csv,
    /// Binary EVTX.
    Evtx,
    /// EVTX XML.
    Xml,
}

impl InputFormat {
    /// Every format's name, for help texts.
    pub const NAMES: &[&str] = &["auto", "jsonl", "json", "csv", "evtx", "xml"];
}

impl FromStr for InputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(InputFormat::Auto),
            "jsonl" => Ok(InputFormat::Jsonl),
            "json" => Ok(InputFormat::Json),
            "csv" => Ok(InputFormat::Csv),
            "evtx" => Ok(InputFormat::Evtx),
            "xml" => Ok(InputFormat::Xml),
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
        "{path}: cannot tell the input format (not EVTX, XML or JSON, and no CSV header of known columns); use --input-format"
    )]
    UnknownFormat {
        /// The input's name.
        path: String,
    },
    /// A container (zip, EVTX) whose structure does not parse.
    #[error("{path}: {message}")]
    Container {
        /// The input's name.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// An input: a file, or standard input.
#[derive(Debug, Clone)]
pub struct Input {
    name: Arc<str>,
    path: Option<PathBuf>,
    /// Keep reading a file as it grows (`tail -f`) until this flag is set.
    follow: Option<Arc<AtomicBool>>,
    /// The bytes themselves, for an input held in memory.
    bytes: Option<Arc<[u8]>>,
    /// How lines are parsed.
    reading: Reading,
}

/// Bytes to read, and whether they can be re-read from the start (a file can; standard
/// input and decompressed streams cannot, so formats that need seeking read them whole).
enum Stream {
    File(Counted<File>),
    Other(Box<dyn Read + Send>),
}

/// A file read as it grows, until `stop` is set, as `tail -F` reads it: at its end, it waits
/// and reads again; a file truncated in place (logrotate's `copytruncate`) is read again from
/// its start, and a file replaced at its path (rotated: renamed, and a new one created) is
/// read to its end and then the new one from its start. Without this, a followed log that
/// rotated was read no more, and said nothing: every event after the rotation was lost.
struct Follow {
    file: File,
    path: PathBuf,
    stop: Arc<AtomicBool>,
    /// Bytes read of the file being read.
    position: u64,
    /// Whether the last byte read ended a line (or nothing was read yet).
    at_line_start: bool,
    /// A line break owed to the stream, given as soon as the file is reopened: the file left
    /// ended within a line, whose rest the next file does not hold.
    owed_line_break: bool,
}

/// How often a followed file is polled at its end.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(50);

impl Follow {
    fn new(file: File, path: PathBuf, stop: Arc<AtomicBool>) -> Self {
        Follow { file, path, stop, position: 0, at_line_start: true, owed_line_break: false }
    }

    /// At the end of the file being read: whether it was truncated or replaced, and if so,
    /// reading goes on from the start of what is at its path now.
    fn reopened(&mut self) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let here = self.file.metadata()?;
        if here.len() < self.position {
            tracing::warn!(path = %self.path.display(), "followed file truncated: read again from its start");
            self.file.seek(SeekFrom::Start(0))?;
        } else {
            // Gone (renamed, not created again yet): the old one may still grow.
            let Ok(there) = std::fs::metadata(&self.path) else { return Ok(false) };
            if (there.dev(), there.ino()) == (here.dev(), here.ino()) {
                return Ok(false);
            }
            let Ok(file) = File::open(&self.path) else { return Ok(false) };
            tracing::warn!(path = %self.path.display(), "followed file replaced (rotated): the new one read from its start");
            self.file = file;
        }
        self.position = 0;
        self.owed_line_break = !self.at_line_start;
        self.at_line_start = true;
        Ok(true)
    }
}

impl Read for Follow {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.file.read(buf)?;
            if n > 0 {
                self.position += n as u64;
                self.at_line_start = buf[n - 1] == b'\n';
                return Ok(n);
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(0);
            }
            if !self.reopened()? {
                std::thread::sleep(FOLLOW_POLL);
            } else if std::mem::take(&mut self.owed_line_break) {
                buf[0] = b'\n';
                return Ok(1);
            }
        }
    }
}

/// A stream that counts the bytes read from it.
struct Counted<R> {
    inner: R,
    counter: Option<Arc<AtomicU64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(counter) = &self.counter {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

impl<R: Seek> Seek for Counted<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl Stream {
    fn into_read(self) -> Box<dyn Read + Send> {
        match self {
            Stream::File(file) => Box::new(file),
            Stream::Other(read) => read,
        }
    }

    /// A seekable stream from the start: the file itself, or everything in memory.
    fn into_seekable(self, prefix: Vec<u8>) -> io::Result<Box<dyn ReadSeek>> {
        match self {
            Stream::File(mut file) => {
                file.seek(SeekFrom::Start(0))?;
                // Uncounted, the file itself: it fills a buffer's spare capacity without
                // zeroing it first (`read_buf`), which the counting wrapper cannot on stable
                // Rust (zeroing 64 KiB for every EVTX chunk was 6% of the instructions).
                Ok(match file.counter {
                    None => Box::new(file.inner),
                    Some(_) => Box::new(file),
                })
            }
            Stream::Other(mut read) => Ok(Box::new(spill(&mut read, &prefix, MAX_DECOMPRESSED_BYTES)?)),
        }
    }
}

/// The most that a stream read whole (a zip entry, a compressed or piped EVTX log) may hold:
/// the largest event log Windows keeps (4 GiB).
pub const MAX_DECOMPRESSED_BYTES: u64 = 4 << 30;

/// `prefix` and the rest of `read`, written to an unlinked temporary file (so that it can be
/// sought in) rather than held in memory: a zip of 2 MB whose entry inflated to 2 GB took 4.2
/// GB held. More than `max` bytes is an error, and nothing past it is read.
fn spill(read: &mut dyn Read, prefix: &[u8], max: u64) -> io::Result<File> {
    let mut file = tempfile::tempfile()?;
    file.write_all(prefix)?;
    let room = (max + 1).saturating_sub(prefix.len() as u64);
    let copied = prefix.len() as u64 + io::copy(&mut read.take(room), &mut file)?;
    if copied > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it decompresses to more than {max} bytes (at most that is read whole): not read"),
        ));
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// `Read + Seek + Send`, for EVTX and zip containers.
trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

impl Input {
    /// Standard input, named `-`.
    pub fn stdin() -> Self {
        Self { name: "-".into(), path: None, follow: None, bytes: None, reading: Reading::default() }
    }

    /// `bytes` held in memory, read as a stream (neither sought nor read twice) named `name`,
    /// whose extension, if any, tells the format as a file's does.
    pub fn bytes(name: &str, bytes: impl Into<Arc<[u8]>>) -> Self {
        Self { name: name.into(), bytes: Some(bytes.into()), ..Self::stdin() }
    }

    /// The file at `path`; `-` means standard input.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        if path.as_os_str() == "-" {
            return Self::stdin();
        }
        Self {
            name: path.display().to_string().into(),
            path: Some(path),
            follow: None,
            bytes: None,
            reading: Reading::default(),
        }
    }

    /// The file at `path`, read as it grows, like `tail -f`: at its end the reader waits
    /// for more until `stop` is set.
    pub fn follow(path: impl Into<PathBuf>, stop: Arc<AtomicBool>) -> Self {
        Self { follow: Some(stop), ..Self::file(path) }
    }

    /// With parsing workers, hands them what a stream has delivered so far (a live stream,
    /// whose records must not wait for a full block); the records are the same.
    pub fn with_low_latency(mut self, low_latency: bool) -> Self {
        self.reading.low_latency = low_latency;
        self
    }

    /// Parses JSON lines with `jobs` threads; the records come out in input order whatever
    /// the number.
    #[must_use]
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.reading.jobs = jobs.max(1);
        self
    }

    /// With `true`, every JSON line is parsed in full: none is dismissed by a scan of its
    /// `EventID` and `Channel` first, so a malformed line of a kind that is skipped anyway
    /// is rejected rather than counted as skipped. Slower on Windows logs.
    #[must_use]
    pub fn with_parse_all(mut self, parse_all: bool) -> Self {
        self.reading.parse_all = parse_all;
        self
    }

    /// Workers read blocks of `bytes` of a regular file.
    #[must_use]
    pub(crate) fn with_block_bytes(mut self, bytes: u64) -> Self {
        self.reading.block_bytes = bytes;
        self
    }

    /// The name used in events and messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens the input and tells its format.
    pub fn open(&self, format: InputFormat) -> Result<Reader, InputError> {
        self.open_counted(format, None)
    }

    /// The records of the JSON lines that start at `lines` (byte offset, line number), in
    /// ascending order, read again from the input's file; see [`Reader::has_line_offsets`].
    pub fn read_lines_at(&self, lines: Vec<(u64, u64)>) -> Result<Reader, InputError> {
        let io_error = |source| InputError::Io { path: self.name.to_string(), source };
        let path = self.path.as_ref().ok_or_else(|| io_error(io::ErrorKind::Unsupported.into()))?;
        // Small: the lines are usually far apart, and each is read through the buffer.
        let mut file = BufReader::with_capacity(8 * 1024, File::open(path).map_err(io_error)?);
        let name = self.name.clone();
        // Where the file stands, while known: the next line is then a relative seek away,
        // often inside the buffer already.
        let mut at = Some(0u64);
        let mut buffer = Vec::new();
        let records = lines.into_iter().flat_map(move |(offset, number)| {
            let origin = Origin { file: name.clone(), position: Position::Line(number) };
            buffer.clear();
            let seek = match at.take() {
                Some(at) => file.seek_relative(offset as i64 - at as i64),
                None => file.seek(SeekFrom::Start(offset)).map(drop),
            };
            let read = seek.and_then(|()| file.read_until(b'\n', &mut buffer));
            let mut records = Vec::with_capacity(1);
            match read {
                Ok(n) => {
                    at = Some(offset + n as u64);
                    parse_json_line(&buffer, buffer.ends_with(b"\n"), true, origin, &mut records);
                    set_line_offset(&mut records, offset);
                }
                Err(e) => {
                    let reason = RejectReason::Truncated(format!("reading the line again: {e}"));
                    records.push(Record::Rejected(RecordError { origin, reason }));
                }
            }
            records
        });
        Ok(Reader::new(records))
    }

    /// The input, a regular file of JSON lines, read in blocks: each of `stages` is given
    /// the records of one block after another on a worker thread of its own (with one stage,
    /// on the calling thread), and what they make of them comes out in file order. Counts
    /// the bytes read in `counter`, as [`Input::open_counted`] does.
    pub(crate) fn open_blocks<T: Send + 'static>(
        &self,
        counter: Option<Arc<AtomicU64>>,
        stages: Vec<Stage<T>>,
    ) -> Result<FileBlocks<T>, InputError> {
        let io_error = |source| InputError::Io { path: self.name.to_string(), source };
        let path = self.path.as_ref().ok_or_else(|| io_error(io::ErrorKind::Unsupported.into()))?;
        let file = File::open(path).map_err(io_error)?;
        Ok(FileBlocks::new(BlockFile::new(self.name.clone(), file, counter, 0, self.reading), stages))
    }

    /// The format its file name tells (by extension), if any: what [`Input::open`] reads it
    /// as under [`InputFormat::Auto`], unless it is compressed or an archive.
    pub fn format_by_name(&self) -> Option<InputFormat> {
        self.path.as_ref()?.file_name()?.to_str().and_then(format_from_name)
    }

    /// Checks that the input opens, as [`Input::open`] would open it (the error it would
    /// give), without reading it; whether it is a regular file, not followed (as
    /// [`Input::is_regular_file`]).
    pub fn opens(&self) -> Result<bool, InputError> {
        match &self.path {
            Some(path) => {
                let file = File::open(path)
                    .map_err(|source| InputError::Io { path: self.name.to_string(), source })?;
                Ok(self.follow.is_none() && file.metadata().is_ok_and(|m| m.is_file()))
            }
            None => Ok(false),
        }
    }

    /// Whether the input is a regular file, not followed: it can be read more than once,
    /// and to its end.
    pub fn is_regular_file(&self) -> bool {
        self.follow.is_none()
            && self.path.as_ref().and_then(|p| std::fs::metadata(p).ok()).is_some_and(|m| m.is_file())
    }

    /// The file opened, with the system asked to read it into its page cache ahead of its
    /// reading (which returns at once), for [`Input::open_counted_from`]; `None` for an input
    /// that is not a file, and when it cannot be opened (its reading will say why).
    pub fn prefetch(&self) -> Option<File> {
        let (Some(path), None) = (&self.path, &self.follow) else { return None };
        let file = File::open(path).ok()?;
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::WillNeed);
        Some(file)
    }

    /// The size of the input in bytes, when it is a file.
    pub fn size(&self) -> Option<u64> {
        self.path.as_ref().and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len())
    }

    /// Whether the input is a file of one block of JSON lines at most, which is read and
    /// parsed on the calling thread, whatever the jobs (see `FileBlocks::new`).
    pub fn fits_one_block(&self) -> bool {
        self.size().is_some_and(|size| size <= self.reading.block_bytes)
    }

    /// [`Input::open`], adding the bytes read from the input (before any decompression)
    /// to `counter`, for progress reports.
    pub fn open_counted(
        &self,
        format: InputFormat,
        counter: Option<Arc<AtomicU64>>,
    ) -> Result<Reader, InputError> {
        self.open_counted_from(None, format, counter)
    }

    /// [`Input::open_counted`], reading the file `opened` (which [`Input::prefetch`] gave)
    /// when there is one instead of opening it again.
    pub fn open_counted_from(
        &self,
        opened: Option<File>,
        format: InputFormat,
        counter: Option<Arc<AtomicU64>>,
    ) -> Result<Reader, InputError> {
        let io_error = |source| InputError::Io { path: self.name.to_string(), source };
        let stream = match (&self.path, &self.follow) {
            (Some(path), Some(stop)) => {
                let file = File::open(path).map_err(io_error)?;
                let follow = Follow::new(file, path.clone(), stop.clone());
                Stream::Other(Box::new(Counted { inner: follow, counter }))
            }
            (Some(path), None) => {
                let file = match opened {
                    Some(file) => file,
                    None => File::open(path).map_err(io_error)?,
                };
                // A named pipe or a process substitution is a path but no file: it can be
                // neither sought nor read twice.
                if file.metadata().is_ok_and(|m| m.is_file()) {
                    Stream::File(Counted { inner: file, counter })
                } else {
                    Stream::Other(Box::new(Counted { inner: file, counter }))
                }
            }
            (None, _) => match &self.bytes {
                Some(bytes) => {
                    Stream::Other(Box::new(Counted { inner: Cursor::new(bytes.clone()), counter }))
                }
                None => Stream::Other(Box::new(Counted { inner: io::stdin(), counter })),
            },
        };
        let name_hint = match (&self.path, &self.bytes) {
            (Some(path), _) => path.file_name().map(|n| n.to_string_lossy().into_owned()),
            (None, Some(_)) => Some(self.name.to_string()),
            (None, None) => None,
        };
        let regular_file = matches!(stream, Stream::File(_));
        let reading = match (&self.path, &self.bytes) {
            (None, None) => Reading { ready_soon: Some(stdin_ready_soon), ..self.reading },
            _ => self.reading,
        };
        let mut reader = open_stream(self.name.clone(), name_hint.as_deref(), stream, format, reading)?;
        reader.rereadable = regular_file;
        Ok(reader)
    }
}

/// Whether standard input has bytes to read within [`READY_WAIT`] (or cannot tell).
fn stdin_ready_soon() -> bool {
    let stdin = io::stdin();
    let mut fds = [rustix::event::PollFd::new(&stdin, rustix::event::PollFlags::IN)];
    let wait = rustix::event::Timespec { tv_sec: 0, tv_nsec: READY_WAIT.as_nanos() as _ };
    rustix::event::poll(&mut fds, Some(&wait)).map_or(true, |ready| ready > 0)
}

/// How long a live stream may be silent before the lines it delivered are parsed.
const READY_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

/// Opens `stream`, named `name` (`name_hint`: its file name, for the extension), looking
/// through gzip and zip, and picks its reader.
fn open_stream(
    name: Arc<str>,
    name_hint: Option<&str>,
    mut stream: Stream,
    format: InputFormat,
    reading: Reading,
) -> Result<Reader, InputError> {
    let io_error = |source| InputError::Io { path: name.to_string(), source };
    let prefix = match &mut stream {
        Stream::File(file) => read_prefix(file),
        Stream::Other(read) => read_prefix(read),
    }
    .map_err(io_error)?;
    if prefix.starts_with(GZIP_MAGIC) {
        let rest = stream.into_read();
        let decoder = MultiGzDecoder::new(Cursor::new(prefix).chain(rest));
        let inner_name = name_hint.map(|n| n.strip_suffix(".gz").unwrap_or(n).to_owned());
        return open_stream(name, inner_name.as_deref(), Stream::Other(Box::new(decoder)), format, reading);
    }
    if prefix.starts_with(ZIP_MAGIC) {
        let seekable = stream.into_seekable(prefix).map_err(io_error)?;
        let archive = zip::ZipArchive::new(seekable)
            .map_err(|e| InputError::Container { path: name.to_string(), message: format!("zip: {e}") })?;
        let reading = Reading { jobs: 1, ..reading };
        let entries = ZipEntries { name, archive, next: 0, current: None, format, reading };
        return Ok(Reader::new(entries));
    }
    let format = match format {
        InputFormat::Auto => name_hint
            .and_then(format_from_name)
            .or_else(|| sniff(&prefix))
            .ok_or_else(|| InputError::UnknownFormat { path: name.to_string() })?,
        format => format,
    };
    if format == InputFormat::Evtx {
        let holes = match &stream {
            Stream::File(file) => Holes::of(&file.inner),
            Stream::Other(_) => Holes::unknown(),
        };
        let seekable = stream.into_seekable(prefix).map_err(io_error)?;
        let records = EvtxRecords::new(name.clone(), seekable, holes, reading.jobs, reading.parse_all)
            .map_err(|message| InputError::Container {
                path: name.to_string(),
                message: format!("EVTX: {message}"),
            })?;
        // A chunk's records cross threads together.
        return Ok(Reader { evtx: true, ..Reader::of_chunks(records) });
    }
    // A regular file of JSON lines is read in blocks, by the parsing workers themselves.
    if format == InputFormat::Jsonl
        && let Stream::File(file) = stream
    {
        let file = BlockFile::new(name, file.inner, file.counter, prefix.len() as u64, reading);
        let stages = (0..reading.jobs).map(|_| Box::new(|records| records) as Stage<Vec<Record>>).collect();
        let chunks = FileBlocks::new(file, stages);
        return Ok(Reader { line_offsets: true, ..Reader::of_chunks(chunks) });
    }
    // A byte order mark before a CSV header, a JSON document or XML is not part of them.
    // JSON lines keep it, so that their offsets stay the file's: each line drops its own.
    let mut prefix = prefix;
    if format != InputFormat::Jsonl && prefix.starts_with(UTF8_BOM) {
        prefix.drain(..UTF8_BOM.len());
    }
    let crlf = prefix_line_ends_with_crlf(&prefix);
    // A buffer no larger than the file: the reader's first fill zeroes all of it (the
    // stream does not read into memory left uninitialized), which for a folder of small
    // files was a fault on every page of 256 KiB per file, most of the time they took.
    let buffer_bytes = match &stream {
        Stream::File(file) => file.inner.metadata().map_or(STREAM_BUFFER_BYTES, |m| {
            usize::try_from(m.len()).unwrap_or(usize::MAX).clamp(PAGE_BYTES, STREAM_BUFFER_BYTES)
        }),
        Stream::Other(_) => STREAM_BUFFER_BYTES,
    };
    let stream = BufReader::with_capacity(buffer_bytes, Cursor::new(prefix).chain(stream.into_read()));
    let records: Box<dyn Iterator<Item = Record> + Send> = match format {
        InputFormat::Jsonl if reading.jobs > 1 => {
            return Ok(Reader::of_chunks(ParallelJsonLines::of_stream(name, stream, reading)));
        }
        InputFormat::Jsonl => return Ok(Reader::of_chunks(JsonLines::new(name, stream, reading.parse_all))),
        InputFormat::Json => {
            return Ok(Reader::of_chunks(json_documents::documents(name, stream, reading.low_latency)));
        }
        InputFormat::Csv => Box::new(CsvRows::new(name, stream, crlf)),
        InputFormat::Xml => Box::new(XmlEvents::new(name, stream)),
        InputFormat::Evtx | InputFormat::Auto => unreachable!("handled above"),
    };
    Ok(Reader::new(records))
}

/// The buffer of a stream read as text (CSV, XML, JSON documents, and JSON lines not read
/// in blocks).
const STREAM_BUFFER_BYTES: usize = 256 * 1024;
const GZIP_MAGIC: &[u8] = b"\x1f\x8b";
use super::json_lines::UTF8_BOM;
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const EVTX_MAGIC: &[u8] = b"ElfFile\0";

/// The records of one opened input.
pub struct Reader {
    records: Records,
    /// Whether each event's [`ProcessEvent::line_offset`] is where its line starts in the
    /// file itself (JSON lines read from a file, not decompressed or followed).
    line_offsets: bool,
    /// Whether the input is a regular file, which [`Input::open`] can read again: not a
    /// stream (standard input, a named pipe, `<(zcat log.gz)`) or a file being followed.
    rereadable: bool,
    /// Whether the input is binary EVTX, parsed on the thread that reads it.
    evtx: bool,
}

/// How a reader's records come: one by one, or in the groups its parser made of them (a
/// line's, a chunk's, a block's).
enum Records {
    One(Box<dyn Iterator<Item = Record> + Send>),
    Chunks { chunks: Box<dyn Iterator<Item = Vec<Record>> + Send>, current: std::vec::IntoIter<Record> },
}

impl Reader {
    fn new(records: impl Iterator<Item = Record> + Send + 'static) -> Self {
        Self { records: Records::One(Box::new(records)), line_offsets: false, rereadable: false, evtx: false }
    }

    fn of_chunks(chunks: impl Iterator<Item = Vec<Record>> + Send + 'static) -> Self {
        let records = Records::Chunks { chunks: Box::new(chunks), current: Vec::new().into_iter() };
        Self { records, line_offsets: false, rereadable: false, evtx: false }
    }

    /// The records in order, in the groups they were parsed in (one record each where the
    /// format has none): a group is handed on as soon as it is parsed, so a live stream's
    /// records do not wait for others, and a fast one crosses threads a group at a time.
    pub fn into_chunks(self) -> Box<dyn Iterator<Item = Vec<Record>> + Send> {
        match self.records {
            Records::One(records) => Box::new(records.map(|record| vec![record])),
            Records::Chunks { chunks, current } => {
                let current: Vec<Record> = current.collect();
                Box::new((!current.is_empty()).then_some(current).into_iter().chain(chunks))
            }
        }
    }

    /// Whether the input is binary EVTX: its records are parsed by the thread that reads
    /// it, so several such inputs are best read on several threads.
    pub fn is_evtx(&self) -> bool {
        self.evtx
    }

    /// Whether the input can be read again from the start.
    pub fn is_rereadable(&self) -> bool {
        self.rereadable
    }

    /// Whether the events' line offsets are positions in the input's file, so that
    /// [`Input::read_lines_at`] can read their lines again.
    pub fn has_line_offsets(&self) -> bool {
        self.line_offsets
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Iterator for Reader {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        match &mut self.records {
            Records::One(records) => records.next(),
            Records::Chunks { chunks, current } => loop {
                if let Some(record) = current.next() {
                    return Some(record);
                }
                *current = chunks.next()?.into_iter();
            },
        }
    }
}

/// Reads enough of a stream to tell its format: up to the end of its first non-blank line
/// (and at least the 8 bytes of the longest magic number), or [`SNIFF_BYTES`], or the end.
/// It stops there rather than filling a buffer, so a live stream (a pipe, a followed
/// file) is not held up waiting for bytes that have not been written yet.
fn read_prefix(stream: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut prefix: Vec<u8> = Vec::new();
    loop {
        let has_line = prefix.len() >= EVTX_MAGIC.len()
            && prefix
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .is_some_and(|start| prefix[start..].contains(&b'\n'));
        // Binary containers are sniffed on their magic alone.
        let binary = [GZIP_MAGIC, ZIP_MAGIC, EVTX_MAGIC]
            .iter()
            .any(|m| prefix.len() >= m.len() && prefix.starts_with(m));
        if has_line || binary || prefix.len() >= SNIFF_BYTES {
            return Ok(prefix);
        }
        // The first read is small: a binary container is told from its first bytes, and
        // a folder of thousands of EVTX files would otherwise copy 64 KiB of each twice.
        // Read into the prefix itself: only the bytes asked for are zeroed first, not a
        // 64 KiB buffer for every input (6% of the instructions of a folder of EVTX files).
        let first = if prefix.is_empty() { FIRST_READ_BYTES } else { 64 * 1024 };
        let (len, want) = (prefix.len(), first.min(SNIFF_BYTES - prefix.len()));
        prefix.resize(len + want, 0);
        match stream.read(&mut prefix[len..]) {
            Ok(0) => {
                prefix.truncate(len);
                return Ok(prefix);
            }
            Ok(n) => prefix.truncate(len + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => prefix.truncate(len),
            Err(e) => return Err(e),
        }
    }
}

/// Whether the first line of `bytes` ends with CRLF.
fn prefix_line_ends_with_crlf(bytes: &[u8]) -> bool {
    bytes.iter().position(|&b| b == b'\n').is_some_and(|at| at > 0 && bytes[at - 1] == b'\r')
}

/// The files under a directory, as [`log_files_under`] finds them.
#[derive(Debug, Default, PartialEq)]
pub struct LogFiles {
    /// The files whose name tells a format this reader takes, in path order.
    pub logs: Vec<PathBuf>,
    /// The other files, in path order: not read.
    pub others: Vec<PathBuf>,
    /// Directories reached again through a link (a loop back to an ancestor, or a second way
    /// into one), not searched again: each path, and the path it was searched under.
    pub searched_already: Vec<(PathBuf, PathBuf)>,
}

/// The files of a directory of logs, searched recursively, in path order: those whose name
/// tells a format this reader takes (`.evtx`, `.jsonl`, `.ndjson`, `.json`, `.csv`, `.xml`,
/// and `.gz` or `.zip` containers), and apart, the other files, which are not read (a
/// triage collection holds `.txt` notes, prefetch files, registry hives).
///
/// Links are followed, as a named file is: a link to a log is read, a link to a directory
/// searched. A directory is searched once, under the first of its paths in path order,
/// whatever order the file system lists entries in; reached again (a link back to an
/// ancestor would otherwise be followed until the system refuses the path), it is named in
/// [`LogFiles::searched_already`] instead.
pub fn log_files_under(dir: &Path) -> Result<LogFiles, InputError> {
    use std::collections::hash_map::Entry;
    use std::os::unix::fs::MetadataExt;
    let io_error = |path: &Path, source| InputError::Io { path: path.display().to_string(), source };
    let mut found = LogFiles::default();
    let mut searched: std::collections::HashMap<(u64, u64), PathBuf> = Default::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let metadata = std::fs::metadata(&dir).map_err(|e| io_error(&dir, e))?;
        match searched.entry((metadata.dev(), metadata.ino())) {
            Entry::Occupied(first) => {
                found.searched_already.push((dir, first.get().clone()));
                continue;
            }
            Entry::Vacant(slot) => {
                slot.insert(dir.clone());
            }
        }
        let mut directories = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e))? {
            let entry = entry.map_err(|e| io_error(&dir, e))?;
            let path = entry.path();
            // The entry's own type needs no `stat` (the directory listing gives it): a stat
            // per file was about two fifths of listing 5,000 files.
            let file_type = entry.file_type().map_err(|e| io_error(&path, e))?;
            let is_dir = if file_type.is_symlink() {
                std::fs::metadata(&path).map_err(|e| io_error(&path, e))?.is_dir()
            } else {
                file_type.is_dir()
            };
            if is_dir {
                directories.push(path);
            } else if is_log_name(&path) {
                found.logs.push(path);
            } else {
                found.others.push(path);
            }
        }
        // Taken from the stack in name order: the search goes in path order, so the first
        // path to a directory is the one it is searched under.
        directories.sort_by(|a, b| b.file_name().cmp(&a.file_name()));
        pending.extend(directories);
    }
    found.logs = sorted(found.logs);
    found.others = sorted(found.others);
    found.searched_already.sort();
    Ok(found)
}

/// `paths` in `Path`'s order (by components), each split into its components once rather than
/// at each comparison: sorting 5,000 paths by `Path`'s own comparison was about a third of
/// listing them.
fn sorted(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    let keys: Vec<Vec<std::path::Component<'_>>> = paths.iter().map(|p| p.components().collect()).collect();
    let mut order: Vec<usize> = (0..paths.len()).collect();
    order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    drop(keys);
    let mut paths: Vec<Option<PathBuf>> = paths.into_iter().map(Some).collect();
    order.into_iter().map(|i| paths[i].take().expect("each path is taken once")).collect()
}

/// Whether a file's name tells a log format this reader takes.
fn is_log_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    let inner = name.strip_suffix(".gz").unwrap_or(name);
    format_from_name(inner).is_some()
        || [".json", ".zip"].iter().any(|ext| inner.to_ascii_lowercase().ends_with(ext))
        || (inner != name && !inner.contains('.'))
}

fn format_from_name(name: &str) -> Option<InputFormat> {
    let extension = Path::new(name).extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "csv" => Some(InputFormat::Csv),
        "jsonl" | "ndjson" => Some(InputFormat::Jsonl),
        "evtx" => Some(InputFormat::Evtx),
        "xml" => Some(InputFormat::Xml),
        _ => None,
    }
}

/// Tells the format from the first bytes: EVTX's magic; XML; JSON whose first line is a
/// whole value is JSON lines, other JSON (or evtx_dump's `Record N` headers) documents;
/// a first line naming a known column is CSV.
fn sniff(prefix: &[u8]) -> Option<InputFormat> {
    if prefix.starts_with(EVTX_MAGIC) {
        return Some(InputFormat::Evtx);
    }
    let text = prefix.strip_prefix(UTF8_BOM).unwrap_or(prefix);
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Some(InputFormat::Jsonl); // empty: no records in any format
    };
    let text = &text[start..];
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or(text);
    if is_record_header(first_line) {
        return Some(InputFormat::Json);
    }
    match text[0] {
        b'<' => Some(InputFormat::Xml),
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

/// The entries of a zip archive, each read as an input of its own named
/// `archive.zip:entry`. An entry is decompressed when its turn comes, into an unlinked
/// temporary file (see [`spill`]).
struct ZipEntries {
    name: Arc<str>,
    archive: zip::ZipArchive<Box<dyn ReadSeek>>,
    next: usize,
    current: Option<Reader>,
    format: InputFormat,
    reading: Reading,
}

impl ZipEntries {
    fn open_next(&mut self) -> Option<Result<Reader, RecordError>> {
        while self.next < self.archive.len() {
            let index = self.next;
            self.next += 1;
            let container_error = |message: String| RecordError {
                origin: Origin { file: self.name.clone(), position: Position::Record(index as u64 + 1) },
                reason: RejectReason::Truncated(message),
            };
            let mut entry = match self.archive.by_index(index) {
                Ok(entry) => entry,
                Err(e) => return Some(Err(container_error(format!("zip entry {}: {e}", index + 1)))),
            };
            if entry.is_dir() {
                continue;
            }
            let entry_name = entry.name().map_or_else(|_| format!("entry {}", index + 1), |n| n.into_owned());
            let file = match spill(&mut entry, &[], MAX_DECOMPRESSED_BYTES) {
                Ok(file) => file,
                Err(e) => return Some(Err(container_error(format!("zip entry {entry_name}: {e}")))),
            };
            let name: Arc<str> = format!("{}:{entry_name}", self.name).into();
            // Read as a file is: sought in where the format needs it (EVTX).
            let stream = Stream::File(Counted { inner: file, counter: None });
            return Some(
                open_stream(name.clone(), Some(&entry_name), stream, self.format, self.reading).map_err(
                    |e| RecordError {
                        origin: Origin { file: name, position: Position::Record(1) },
                        reason: RejectReason::UnknownShape(e.to_string()),
                    },
                ),
            );
        }
        None
    }
}

impl Iterator for ZipEntries {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            if let Some(record) = self.current.as_mut().and_then(Iterator::next) {
                return Some(record);
            }
            match self.open_next()? {
                Ok(reader) => self.current = Some(reader),
                Err(error) => return Some(Record::Rejected(error)),
            }
        }
    }
}

/// A CSV input's bytes as the csv crate reads them, counted, failing once a row has taken
/// more than a record may ([`super::MAX_LINE_BYTES`]): the crate holds a row whole, and one
/// of 300 MB took 1.4 GB.
struct BoundedRows<R> {
    inner: R,
    /// Bytes handed to the crate.
    read: u64,
    /// The count past which a read fails: set before each row.
    limit: u64,
}

/// The error [`BoundedRows`] fails with, told apart from the input's own.
#[derive(Debug, thiserror::Error)]
#[error("a row longer than a record may be")]
struct RowTooLong;

impl<R: Read> Read for BoundedRows<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read > self.limit {
            return Err(io::Error::other(RowTooLong));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// CSV rows under a header of column names.
struct CsvRows<R> {
    name: Arc<str>,
    reader: csv::Reader<BoundedRows<R>>,
    columns: Option<Vec<Option<super::Field>>>,
    row: csv::StringRecord,
    /// The csv crate counts the line of a record that follows a CRLF one short (it counts
    /// the `\n` when it starts the next record), so lines of CRLF files are corrected.
    line_offset: u64,
    done: bool,
}

/// The bytes a CSV row (or the header) may take, with room for the crate's buffer ahead.
const CSV_ROW_BYTES: u64 = super::MAX_LINE_BYTES as u64 + (64 << 10);

impl<R: Read> CsvRows<R> {
    fn new(name: Arc<str>, stream: R, crlf: bool) -> Self {
        let stream = BoundedRows { inner: stream, read: 0, limit: CSV_ROW_BYTES };
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
            csv::ErrorKind::Io(e) if e.get_ref().is_some_and(|inner| inner.is::<RowTooLong>()) => {
                self.done = true;
                RejectReason::RowTooLong { unit: "row" }
            }
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
        // What the crate has taken so far is at most its buffer ahead of the row's start.
        let mut start = self.reader.position().byte();
        self.reader.get_mut().limit = start + CSV_ROW_BYTES;
        if self.columns.is_none() {
            match self.reader.headers() {
                Ok(headers) => self.columns = Some(defender::csv_columns(headers)),
                Err(e) => {
                    self.done = true;
                    return Some(self.reject(e));
                }
            }
            start = self.reader.position().byte();
            self.reader.get_mut().limit = start + CSV_ROW_BYTES;
        }
        match self.reader.read_record(&mut self.row) {
            Ok(false) => {
                self.done = true;
                None
            }
            Ok(true) => {
                let line = self.row.position().map_or(0, |p| p.line());
                // A row the crate held within its read-ahead past the bound: rejected as one
                // past it, and the rows after it read.
                let bytes = self.reader.position().byte() - start;
                if bytes > super::MAX_LINE_BYTES as u64 {
                    let reason = RejectReason::TooLong { unit: "row", bytes: bytes.saturating_sub(1) };
                    return Some(Record::Rejected(RecordError { origin: self.origin(line), reason }));
                }
                let columns = self.columns.as_deref().expect("read above");
                Some(defender::read_csv_row(columns, &self.row, self.origin(line)))
            }
            Err(e) => Some(self.reject(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Skipped;
    use crate::events::json_lines::CHUNK_BYTES;

    const ROW: &str = r#"{"Timestamp":"2024-05-01T10:00:00Z","DeviceName":"web01","FileName":"cmd.exe"}"#;

    #[test]
    fn a_followed_file_is_read_on_after_it_is_rotated_or_truncated() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let row = |id: u32| {
            format!(
                "{{\"Timestamp\":\"2024-05-01T10:00:00Z\",\"DeviceName\":\"web01\",\"FileName\":\"cmd.exe\",\"ReportId\":{id}}}\n"
            )
        };
        let append = |path: &Path, text: &str| {
            let mut file = std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap();
            file.write_all(text.as_bytes()).unwrap();
        };
        append(&path, &(row(1) + &row(2)));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Input::follow(&path, stop.clone()).open(InputFormat::Jsonl).unwrap();
        let (sender, records) = std::sync::mpsc::channel();
        let reading = std::thread::spawn(move || {
            for record in reader {
                let seen = match record {
                    Record::Event(event) => event.get(super::super::Field::ReportId).to_owned(),
                    Record::Skipped(skipped) => format!("skipped {}", skipped.kind),
                    Record::Rejected(error) => format!("rejected {}", error.origin),
                };
                sender.send(seen).unwrap();
            }
        });
        let next = |n: usize| -> Vec<String> {
            (0..n)
                .map(|_| records.recv_timeout(std::time::Duration::from_secs(10)).expect("a record"))
                .collect()
        };
        assert_eq!(next(2), ["1", "2"]);
        // Rotated: renamed (and written once more there), then a new file at the path.
        let rotated = dir.path().join("events.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        append(&rotated, &row(3));
        std::thread::sleep(std::time::Duration::from_millis(200));
        append(&path, &(row(4) + &row(5)));
        assert_eq!(next(3), ["3", "4", "5"]);
        // Truncated in place, and written again.
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        append(&path, &row(6));
        assert_eq!(next(1), ["6"]);
        // Rotated within a line: the cut line is rejected, not joined to the new file's first.
        append(&path, "{\"Timestamp\":\"2024-05-01T10:00:00Z\",\"Rep");
        std::thread::sleep(std::time::Duration::from_millis(200));
        std::fs::rename(&path, &rotated).unwrap();
        append(&path, &row(7));
        let last = next(2);
        assert!(last[0].starts_with("rejected ") && last[1] == "7", "{last:?}");
        stop.store(true, Ordering::Relaxed);
        reading.join().unwrap();
        assert!(records.try_recv().is_err());
    }

    #[test]
    fn what_is_read_whole_goes_to_a_file_and_no_further_than_its_bound() {
        let bytes: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
        let mut file = spill(&mut &bytes[10..], &bytes[..10], 3 << 20).unwrap();
        let mut read = Vec::new();
        file.read_to_end(&mut read).unwrap();
        assert!(read == bytes, "the prefix and the stream, in order");
        // One byte more than the bound: refused, and the stream read no further than it.
        let mut stream = &bytes[10..];
        let error = spill(&mut stream, &bytes[..10], (3 << 20) - 1).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "it decompresses to more than {} bytes (at most that is read whole): not read",
                (3 << 20) - 1
            )
        );
        assert!(stream.is_empty(), "read to one past the bound");
        let mut stream = &bytes[10..];
        assert!(spill(&mut stream, &bytes[..10], 1 << 20).is_err());
        assert_eq!(stream.len(), (3 << 20) - 10 - ((1 << 20) + 1 - 10), "read to one past the bound, not on");
    }

    #[test]
    fn an_evtx_log_in_a_zip_and_in_gzip_reads_as_the_file_does() {
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/evtx");
        let log = shared.join("LM_typical_IIS_webshell_sysmon_1_10_traces.evtx");
        let bytes = std::fs::read(&log).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let zipped = dir.path().join("logs.zip");
        let mut writer = zip::ZipWriter::new(File::create(&zipped).unwrap());
        writer.start_file("Sysmon.evtx", zip::write::SimpleFileOptions::default()).unwrap();
        writer.write_all(&bytes).unwrap();
        writer.finish().unwrap();
        let gzipped = dir.path().join("Sysmon.evtx.gz");
        let mut encoder =
            flate2::write::GzEncoder::new(File::create(&gzipped).unwrap(), flate2::Compression::fast());
        encoder.write_all(&bytes).unwrap();
        encoder.finish().unwrap();
        let kinds = |path: &std::path::Path| -> Vec<String> {
            Input::file(path)
                .open(InputFormat::Auto)
                .unwrap()
                .map(|record| match record {
                    Record::Event(event) => event.get(crate::events::Field::ProcessCommandLine).to_owned(),
                    Record::Skipped(skipped) => skipped.kind,
                    Record::Rejected(error) => format!("rejected: {}", error.reason),
                })
                .collect()
        };
        let direct = kinds(&log);
        assert_eq!(direct.len(), 4, "{direct:?}");
        assert_eq!(kinds(&zipped), direct);
        assert_eq!(kinds(&gzipped), direct);
    }

    #[test]
    fn a_directory_is_searched_through_its_links_and_its_files_come_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("logs");
        let elsewhere = dir.path().join("elsewhere");
        for sub in ["a", "a.b", "a/b", "z"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::create_dir_all(&elsewhere).unwrap();
        for file in ["a/b/2.evtx", "a.b/1.jsonl", "a/0.csv", "z/notes.txt", "top.xml"] {
            std::fs::write(root.join(file), "").unwrap();
        }
        std::fs::write(elsewhere.join("linked.jsonl"), "").unwrap();
        std::fs::write(elsewhere.join("inside.evtx"), "").unwrap();
        // A link to a log is read, a link to a directory searched.
        std::os::unix::fs::symlink(elsewhere.join("linked.jsonl"), root.join("z/link.jsonl")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("a/linked-dir")).unwrap();
        // Links back to an ancestor and to the root, and a second way into a directory,
        // whose path comes after its own: each directory is searched once, under its first
        // path.
        std::os::unix::fs::symlink("..", root.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink(&root, root.join("z/root")).unwrap();
        std::os::unix::fs::symlink(root.join("a.b"), root.join("z/again")).unwrap();
        let LogFiles { logs, others, searched_already } = log_files_under(&root).unwrap();
        let relative: Vec<String> =
            logs.iter().map(|p| p.strip_prefix(&root).unwrap().display().to_string()).collect();
        assert_eq!(
            relative,
            [
                "a/0.csv",
                "a/b/2.evtx",
                "a/linked-dir/inside.evtx",
                "a/linked-dir/linked.jsonl",
                "a.b/1.jsonl",
                "top.xml",
                "z/link.jsonl"
            ]
        );
        assert_eq!(others, [root.join("z/notes.txt")]);
        assert_eq!(
            searched_already,
            [
                (root.join("a/b/up"), root.join("a")),
                (root.join("z/again"), root.join("a.b")),
                (root.join("z/root"), root.clone())
            ]
        );
        // A link that leads nowhere is an error that names it.
        std::os::unix::fs::symlink(dir.path().join("gone"), root.join("z/dangling.jsonl")).unwrap();
        let error = log_files_under(&root).unwrap_err().to_string();
        assert!(error.contains("dangling.jsonl"), "{error}");
    }

    #[test]
    fn paths_are_sorted_as_path_orders_them() {
        let mut next = crate::events::drawn(0x5EED_0BAD_F00D_0001u64);
        // Pieces that order differently by bytes and by components: separators doubled, `.`
        // components, names that extend others, dots and dashes below `/`, non-ASCII.
        let pieces = ["a", "a.b", "a-b", "b", ".", "é", "a b", "A", "0"];
        for _ in 0..300 {
            let paths: Vec<PathBuf> = (0..next(30))
                .map(|_| {
                    let mut path = String::from(if next(2) == 0 { "/r" } else { "r" });
                    for _ in 0..1 + next(4) {
                        path.push_str(if next(6) == 0 { "//" } else { "/" });
                        path.push_str(pieces[next(pieces.len() as u64) as usize]);
                    }
                    PathBuf::from(path)
                })
                .collect();
            let mut expected = paths.clone();
            expected.sort();
            assert_eq!(sorted(paths), expected);
        }
    }

    fn events_with_offsets(reader: Reader) -> Vec<(u64, Option<u64>)> {
        reader
            .map(|record| match record {
                Record::Event(event) => (event.origin().position.number(), event.line_offset()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// A record as a comparable value: events by their values, the others as they are.
    type Comparable = (Option<crate::events::ProcessEvent>, Option<Skipped>, Option<RecordError>);

    fn comparable(record: Record) -> Comparable {
        match record {
            Record::Event(event) => (Some(*event), None, None),
            Record::Skipped(skipped) => (None, Some(skipped), None),
            Record::Rejected(error) => (None, None, Some(error)),
        }
    }

    #[test]
    fn parsing_workers_number_every_record_as_one_thread_does() {
        // Windows lines of every kind (process creations, others, dismissed unparsed) and
        // Defender rows, over several chunks, with blank lines, a malformed line, a line
        // longer than a chunk and an unterminated last line.
        let data =
            |file| std::fs::read_to_string(format!("{}/../tests/data/{file}", env!("CARGO_MANIFEST_DIR")));
        let (windows, defender) =
            (data("windows/scenario.evtx-dump.jsonl").unwrap(), data("defender-rows.jsonl").unwrap());
        let mut text = String::new();
        for round in 0..400 {
            text.push_str(if round % 2 == 0 { &windows } else { &defender });
            text.push_str(if round == 97 { "\n{not json\n\n" } else { "\n" });
            if round == 201 {
                text.push_str(&format!("{{\"FileName\": \"{}\"}}\n", "a".repeat(CHUNK_BYTES + 5)));
            }
        }
        text.push_str(&ROW[..ROW.len() - 1]);
        assert!(text.len() > 4 * CHUNK_BYTES, "{} bytes", text.len());
        let file = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
        std::fs::write(file.path(), &text).unwrap();
        let read = |jobs| -> Vec<_> {
            Input::file(file.path())
                .with_jobs(jobs)
                .open(InputFormat::Auto)
                .unwrap()
                .map(comparable)
                .collect()
        };
        // Line by line from a stream, as the reference.
        let one = streamed(file.path(), &text, 1);
        let lines = text.lines().count() as u64;
        assert_eq!(one.last().unwrap().2.as_ref().map(|e| e.origin.position), Some(Position::Line(lines)));
        assert!(one.iter().any(|r| r.1.is_some()) && one.iter().filter(|r| r.2.is_some()).count() == 3);
        // The file in blocks, and the stream read by a thread for the workers.
        for (jobs, many) in [(1, read(1)), (2, read(2)), (3, read(3)), (2, streamed(file.path(), &text, 2))] {
            assert_eq!(many.len(), one.len(), "{jobs} jobs");
            for (a, b) in one.iter().zip(&many) {
                assert!(a == b, "{jobs} jobs: {a:?} != {b:?}");
            }
        }
    }

    /// A stream that gives its bytes, then fails.
    struct FailingAfter(Cursor<Vec<u8>>);

    impl Read for FailingAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt stream")),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn a_read_error_inside_a_line_is_one_rejection_whatever_the_number_of_jobs() {
        // Found by the `containers` fuzz target: a gzip stream whose checksum fails after a
        // partial line gave one record with one job and two with more.
        for tail in ["", "{\"Timestamp\":\"2024-05-01T10:0", "\n\n"] {
            let text = format!("{ROW}\n{ROW}\n{tail}");
            let read = |jobs| -> Vec<Comparable> {
                let stream = Stream::Other(Box::new(FailingAfter(Cursor::new(text.clone().into_bytes()))));
                let reading = Reading { jobs, ..Reading::default() };
                open_stream("s".into(), None, stream, InputFormat::Jsonl, reading)
                    .unwrap()
                    .map(comparable)
                    .collect()
            };
            let one = read(1);
            assert_eq!(one.len(), 3, "{tail:?}: two rows and the error");
            let error = one[2].2.as_ref().expect("the read error");
            assert!(error.to_string().contains("read error: corrupt stream"), "{error}");
            for jobs in [2, 3] {
                assert_eq!(read(jobs), one, "{tail:?}: {jobs} jobs");
            }
        }
    }

    /// `text` read as a stream (standard input, a pipe) named as `path` is: line by line
    /// with one job, by a reading thread for the workers with more.
    fn streamed(path: &Path, text: &str, jobs: usize) -> Vec<Comparable> {
        let stream = Stream::Other(Box::new(Cursor::new(text.as_bytes().to_vec())));
        let (name, reading) = (path.display().to_string().into(), Reading { jobs, ..Reading::default() });
        open_stream(name, None, stream, InputFormat::Jsonl, reading).unwrap().map(comparable).collect()
    }

    #[test]
    fn blocks_of_any_size_give_every_line_once() {
        // Block edges at every place a line can have one: on a newline, just before and
        // after it, inside a blank line, a CRLF, a line longer than several blocks, a file
        // that ends without a newline.
        let rows = std::fs::read_to_string(format!(
            "{}/../tests/data/defender-rows.jsonl",
            env!("CARGO_MANIFEST_DIR")
        ));
        let rows = rows.unwrap();
        let long =
            format!("{{\"FileName\": \"{}\", \"Timestamp\": \"2024-05-01T10:00:00Z\"}}", "b".repeat(300));
        let text = format!("\n{rows}\n\n{ROW}\r\n{long}\n{{not json\n{rows}{ROW}");
        let file = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
        std::fs::write(file.path(), &text).unwrap();
        let read = |jobs, block| -> Vec<_> {
            let input = Input::file(file.path()).with_jobs(jobs).with_block_bytes(block);
            input.open(InputFormat::Auto).unwrap().map(comparable).collect()
        };
        let one = streamed(file.path(), &text, 1);
        assert!(one.len() > 10 && one.iter().any(|r| r.2.is_some()), "{one:?}");
        let sizes = [1, 2, 3, 5, 64, 299, 300, 301, 4096, 1 << 20];
        for (jobs, block) in [1, 2].into_iter().flat_map(|jobs| sizes.map(|block| (jobs, block))) {
            let many = read(jobs, block);
            assert_eq!(many.len(), one.len(), "{jobs} jobs, blocks of {block}");
            for (a, b) in one.iter().zip(&many) {
                assert!(a == b, "{jobs} jobs, blocks of {block}: {a:?} != {b:?}");
            }
        }
    }

    #[test]
    fn a_file_read_in_blocks_counts_its_bytes_once() {
        let file = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
        let text = format!("{ROW}\n").repeat(1000);
        std::fs::write(file.path(), &text).unwrap();
        let counter = Arc::new(AtomicU64::new(0));
        let input = Input::file(file.path()).with_jobs(2).with_block_bytes(1000);
        let reader = input.open_counted(InputFormat::Auto, Some(counter.clone())).unwrap();
        assert_eq!(reader.count(), 1000);
        assert_eq!(counter.load(Ordering::Relaxed), text.len() as u64);
    }

    #[test]
    fn lines_are_read_again_at_their_offsets() {
        let file = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
        std::fs::write(file.path(), format!("{ROW}\n\n{ROW}\n{ROW}")).unwrap();
        let line = ROW.len() as u64 + 1;
        let expected = vec![(1, Some(0)), (3, Some(line + 1)), (4, Some(2 * line + 1))];
        for jobs in [1, 2] {
            let input = Input::file(file.path()).with_jobs(jobs);
            let reader = input.open(InputFormat::Auto).unwrap();
            assert!(reader.has_line_offsets());
            assert_eq!(events_with_offsets(reader), expected, "{jobs} jobs");
            let again = input.read_lines_at(vec![(line + 1, 3), (2 * line + 1, 4)]).unwrap();
            assert_eq!(events_with_offsets(again), expected[1..], "{jobs} jobs");
        }
        // An offset that is not a line's start any more is a rejected record, named.
        let input = Input::file(file.path());
        let records: Vec<Record> = input.read_lines_at(vec![(5, 1)]).unwrap().collect();
        assert!(
            matches!(&records[..], [Record::Rejected(RecordError { origin, reason: RejectReason::MalformedJson(_) })] if origin.position == Position::Line(1)),
            "{records:?}"
        );
    }

    #[test]
    fn decompressed_lines_have_no_file_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, format!("{ROW}\n").as_bytes()).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        assert!(!Input::file(&path).open(InputFormat::Auto).unwrap().has_line_offsets());
    }
}
