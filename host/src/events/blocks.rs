//! A regular file of JSON lines read in blocks at fixed offsets, each block read, parsed
//! and handed on (to be evaluated, say) by one worker, the results coming out in file order.
//!
//! No thread reads for the others: a block's bytes are read (`pread`) and parsed on the
//! core that then works on its records, and only what the stage makes of them crosses to
//! the thread that takes the results in.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use super::Record;
use super::json_lines::{
    LineNumbers, Lines, MAX_LINE_BYTES, PAGE_BYTES, Reading, page_lead, pass_over_long_line, spawn,
};
use crate::in_order::InOrder;

/// Bytes read at once beyond a block, looking for the end of its last line.
const READ_BYTES: usize = 64 * 1024;

/// How many blocks past the one a worker reads it asks the system to read ahead (see
/// [`BlockReader::read`]).
const BLOCKS_ASKED_AHEAD: u64 = 8;

/// What one worker makes of the records of one block, on the worker's thread.
pub(crate) type Stage<T> = Box<dyn FnMut(Vec<Record>) -> T + Send>;

/// What the stages made of each block of a file, in file order.
pub(crate) struct FileBlocks<T> {
    /// `None` once the file's last block came out (the workers then stop).
    source: Option<Source<T>>,
}

enum Source<T> {
    /// One stage: the blocks are read and handed to it on the calling thread.
    Inline { reader: BlockReader, stage: Stage<T>, next: u64 },
    /// A worker per stage, a few blocks ahead of the results taken.
    Workers {
        /// Each block's result (or the panic of the stage that made it), and whether the
        /// file ended with it.
        results: InOrder<(std::thread::Result<T>, bool)>,
        /// The numbers of the blocks to read, and the next to ask for.
        blocks: SyncSender<u64>,
        next: u64,
    },
}

/// What a block reader needs: the file, how to parse it, and where the lines stand.
#[derive(Clone)]
pub(crate) struct BlockFile {
    pub(crate) name: Arc<str>,
    pub(crate) file: Arc<File>,
    /// Bytes of a block (its last line is read on to its end).
    pub(crate) block_bytes: u64,
    pub(crate) parse_all: bool,
    /// Counts the bytes read, past the first `counted` (counted already), for progress.
    pub(crate) counter: Option<Arc<AtomicU64>>,
    pub(crate) counted: u64,
}

impl BlockFile {
    /// `file`, named `name`, read as `reading` says; its first `counted` bytes were counted.
    pub(super) fn new(
        name: Arc<str>,
        file: File,
        counter: Option<Arc<AtomicU64>>,
        counted: u64,
        reading: Reading,
    ) -> Self {
        let (block_bytes, parse_all) = (reading.block_bytes, reading.parse_all);
        Self { name, file: Arc::new(file), block_bytes, parse_all, counter, counted }
    }
}

impl<T: Send + 'static> FileBlocks<T> {
    /// Reads `file` with one worker per stage; with one stage, or a file of one block, on
    /// the calling thread (with the first stage): workers started for one block cost more
    /// than its reading (a folder of 3,000 small files took 10 s on two jobs, 0.2 s on one).
    pub(crate) fn new(file: BlockFile, mut stages: Vec<Stage<T>>) -> Self {
        let numbers = Arc::new(LineNumbers::default());
        let one_block = file.file.metadata().is_ok_and(|m| m.len() <= file.block_bytes);
        if stages.len() <= 1 || one_block {
            stages.truncate(1);
            let stage = stages.pop().expect("a stage to hand the blocks to");
            let reader = BlockReader { file, numbers, buffer: Vec::new() };
            return Self { source: Some(Source::Inline { reader, stage, next: 0 }) };
        }
        let ahead = stages.len() as u64 * 2;
        let (blocks, queue) = std::sync::mpsc::sync_channel::<u64>(ahead as usize);
        for block in 0..ahead {
            blocks.send(block).expect("the queue holds this many");
        }
        let (results_tx, results) = std::sync::mpsc::sync_channel(ahead as usize);
        let queue = Arc::new(Mutex::new(queue));
        for mut stage in stages {
            let (queue, results_tx) = (queue.clone(), results_tx.clone());
            let mut reader = BlockReader { file: file.clone(), numbers: numbers.clone(), buffer: Vec::new() };
            spawn("rulehost-parse", move || {
                while let Ok(Ok(block)) = queue.lock().map(|queue| queue.recv()) {
                    let (records, last) = reader.read(block);
                    // A stage that panics (a bug: a rule's failure is an outcome) ends the
                    // run where its block is taken in, instead of leaving it waiting.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage(records)));
                    let failed = result.is_err();
                    if results_tx.send((block, (result, last || failed))).is_err() || failed {
                        return;
                    }
                }
            });
        }
        Self { source: Some(Source::Workers { results: InOrder::new(results), blocks, next: ahead }) }
    }
}

/// What each block gave, in file order.
impl<T> Iterator for FileBlocks<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let (result, last) = match self.source.as_mut()? {
            Source::Inline { reader, stage, next } => {
                let (records, last) = reader.read(*next);
                *next += 1;
                (stage(records), last)
            }
            Source::Workers { results, blocks, next } => {
                let (result, last) = results.next_blocking()?;
                let result = result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                if !last {
                    // Fails only once the workers are gone, which `next_blocking` tells.
                    let _ = blocks.send(*next);
                    *next += 1;
                }
                (result, last)
            }
        };
        if last {
            // The workers stop once the blocks asked for are read and the queue is gone.
            self.source = None;
        }
        Some(result)
    }
}

/// One worker's reader of blocks, with its own buffer.
struct BlockReader {
    file: BlockFile,
    numbers: Arc<LineNumbers>,
    buffer: Vec<u8>,
}

impl BlockReader {
    /// The records of block `index`'s lines, numbered in the file, and whether the file
    /// ended there.
    fn read(&mut self, index: u64) -> (Vec<Record>, bool) {
        let file = &self.file;
        // Block `index + BLOCKS_ASKED_AHEAD` asked of the page cache (which returns at once):
        // the workers read blocks at once at offsets of their own, and the system's own
        // read-ahead, made for one reader going forward, kept the disk of a file read for the
        // first time from being busy.
        let ahead = (index + BLOCKS_ASKED_AHEAD) * file.block_bytes;
        let _ = rustix::fs::fadvise(
            &*file.file,
            ahead,
            std::num::NonZeroU64::new(file.block_bytes),
            rustix::fs::Advice::WillNeed,
        );
        let lines = read_block(&file.file, index, file.block_bytes, &mut self.buffer);
        if let Some(counter) = &file.counter {
            let own = lines.own.start.max(file.counted)..lines.own.end.max(file.counted);
            counter.fetch_add(own.end - own.start, Ordering::Relaxed);
        }
        let lines = lines.lines(&self.buffer);
        let last = lines.last;
        (self.numbers.parse(&file.name, index, lines, file.parse_all), last)
    }
}

/// Where the lines of a block lie in the buffer it was read into: see [`read_block`].
struct BlockLines {
    start: usize,
    end: usize,
    /// Where `start` is in the file.
    offset: u64,
    /// Whether the file ended in the block or its last line.
    last: bool,
    error: Option<String>,
    /// The bytes of the file read that are the block's own.
    own: std::ops::Range<u64>,
    /// The length of its last line, when that is too long to read ([`MAX_LINE_BYTES`]).
    too_long: Option<u64>,
}

impl BlockLines {
    fn lines<'a>(&'a self, buffer: &'a [u8]) -> Lines<'a> {
        Lines {
            bytes: &buffer[self.start..self.end],
            offset: self.offset,
            last: self.last,
            error: self.error.as_deref(),
            too_long: self.too_long,
        }
    }
}

/// Reads the lines that start in block `index` of `file` (its bytes from `index * size`
/// to `(index + 1) * size`) into `buffer`: the byte before the block tells whether a line
/// starts at its first; the line that starts last in it is read on to its newline. So every
/// line belongs to one block, whatever its length, and blocks can be read in any order.
fn read_block(file: &File, index: u64, size: u64, buffer: &mut Vec<u8>) -> BlockLines {
    let block = index * size;
    let from = block.saturating_sub(1);
    let wanted = (block + size - from) as usize;
    // Sized first, so that the placement below (see [`PAGE_BYTES`]) still holds for the
    // reads.
    let room = PAGE_BYTES + wanted + READ_BYTES;
    if buffer.len() < room {
        buffer.resize(room, 0);
    }
    let lead = page_lead(buffer, from);
    let mut filled = lead;
    let (mut ended, mut error) = (false, None);
    match read_at(file, from, wanted, buffer, &mut filled) {
        Ok(whole) => ended = !whole,
        Err(e) => error = Some(e.to_string()),
    }
    let own = block..(from + (filled - lead) as u64).max(block);
    let start = if index == 0 {
        lead
    } else {
        memchr::memchr(b'\n', &buffer[lead..filled]).map_or(filled, |at| lead + at + 1)
    };
    let mut end = filled;
    let mut too_long = None;
    if start < filled && !ended && error.is_none() && buffer[filled - 1] != b'\n' {
        // The last line goes on past the block.
        let line_start = memchr::memrchr(b'\n', &buffer[start..filled]).map_or(start, |at| start + at + 1);
        loop {
            let before = filled;
            match read_at(file, from + (before - lead) as u64, READ_BYTES, buffer, &mut filled) {
                Ok(whole) => {
                    if let Some(at) = memchr::memchr(b'\n', &buffer[before..filled]) {
                        end = before + at + 1;
                        break;
                    }
                    end = filled;
                    if !whole {
                        ended = true;
                        break;
                    }
                    if filled - line_start > MAX_LINE_BYTES {
                        // Passed over to its end, in a window of the buffer, not held.
                        let mut rest = ReadAt { file, offset: from + (filled - lead) as u64 };
                        let passed = pass_over_long_line(&mut rest, &mut buffer[line_start..filled]);
                        too_long = Some((filled - line_start) as u64 + passed.length);
                        (ended, error) = (passed.ended, passed.error);
                        end = line_start;
                        break;
                    }
                }
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
    }
    if error.is_some() {
        // Only whole lines before the error.
        end = memchr::memrchr(b'\n', &buffer[start..end]).map_or(start, |at| start + at + 1);
    }
    BlockLines {
        start,
        end,
        offset: from + (start - lead) as u64,
        last: ended || error.is_some(),
        error,
        own,
        too_long,
    }
}

/// `file` read on from `offset` by position, as every worker reads the shared file.
struct ReadAt<'a> {
    file: &'a File,
    offset: u64,
}

impl io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Reads up to `len` bytes of `file` at `offset` into `buffer` after its first `filled`,
/// adding them to `filled`; tells whether it read them all (not: the file ended). The
/// buffer only grows, so that its bytes are initialized once.
fn read_at(
    file: &File,
    offset: u64,
    len: usize,
    buffer: &mut Vec<u8>,
    filled: &mut usize,
) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let (first, wanted) = (*filled, *filled + len);
    if buffer.len() < wanted {
        buffer.resize(wanted.max(buffer.len() * 2), 0);
    }
    while *filled < wanted {
        match file.read_at(&mut buffer[*filled..wanted], offset + (*filled - first) as u64) {
            Ok(0) => return Ok(false),
            Ok(n) => *filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_lies_where_its_address_and_its_offset_in_the_file_agree_modulo_the_page() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let text: String = (0..20_000).map(|n| format!("{{\"line\":{n}}}\n")).collect();
        std::fs::write(file.path(), &text).unwrap();
        let file = File::open(file.path()).unwrap();
        for size in [4096, 10_000, 65_536] {
            let mut buffer = Vec::new();
            for index in 0..(text.len() as u64).div_ceil(size) {
                let lines = read_block(&file, index, size, &mut buffer);
                let address = buffer.as_ptr() as usize + lines.start;
                assert_eq!(
                    address % PAGE_BYTES,
                    lines.offset as usize % PAGE_BYTES,
                    "block {index} of {size}"
                );
                // And the bytes there are the file's at that offset.
                let at = lines.offset as usize;
                assert_eq!(
                    &buffer[lines.start..lines.end],
                    &text.as_bytes()[at..at + lines.end - lines.start]
                );
            }
        }
    }

    #[test]
    fn a_line_too_long_is_passed_over_without_being_held() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let long = 3 * MAX_LINE_BYTES;
        let mut text = b"{\"first\":1}\n".to_vec();
        text.extend(std::iter::repeat_n(b'a', long));
        text.extend_from_slice(b"\n{\"next\":2}\n");
        std::fs::write(file.path(), &text).unwrap();
        let file = File::open(file.path()).unwrap();
        let mut buffer = Vec::new();
        let lines = read_block(&file, 0, 4096, &mut buffer);
        assert_eq!(lines.too_long, Some(long as u64));
        assert_eq!(&buffer[lines.start..lines.end], b"{\"first\":1}\n");
        assert!(!lines.last && lines.error.is_none());
        // Read up to the bound, then in a window: not the line's three times the bound.
        assert!(buffer.len() < 2 * MAX_LINE_BYTES + (1 << 20), "{} bytes held", buffer.len());
        // The block the line ends in starts after it.
        let index = (12 + long as u64) / 4096;
        let next = read_block(&file, index, 4096, &mut buffer);
        assert_eq!(&buffer[next.start..next.end], b"{\"next\":2}\n");
        assert_eq!(next.too_long, None);
    }

    /// The file at `path`, read in blocks of 30 bytes.
    fn blocks_of_30_bytes(path: &std::path::Path) -> BlockFile {
        BlockFile {
            name: Arc::from("test.jsonl"),
            file: Arc::new(File::open(path).unwrap()),
            block_bytes: 30,
            parse_all: false,
            counter: None,
            counted: 0,
        }
    }

    #[test]
    #[should_panic(expected = "a stage's bug")]
    fn a_stage_that_panics_ends_the_run_where_its_block_is_taken_in() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "{}\n".repeat(100)).unwrap();
        let file = blocks_of_30_bytes(file.path());
        let stages = (0..2)
            .map(|_| {
                let mut blocks = 0;
                Box::new(move |records: Vec<Record>| {
                    blocks += 1;
                    assert!(blocks < 3, "a stage's bug");
                    records.len()
                }) as Stage<usize>
            })
            .collect();
        // Without the panic carried over, this would wait for the failed block forever.
        let taken: usize = FileBlocks::new(file, stages).sum();
        panic!("all {taken} records were taken in");
    }

    #[test]
    fn a_file_of_one_block_is_read_on_the_calling_thread_and_a_longer_one_by_the_workers() {
        let threads_of = |lines: usize| -> (usize, Vec<std::thread::ThreadId>) {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), "{}\n".repeat(lines)).unwrap();
            let file = blocks_of_30_bytes(file.path());
            let stages = (0..2)
                .map(|_| {
                    Box::new(|records: Vec<Record>| (records.len(), std::thread::current().id())) as Stage<_>
                })
                .collect();
            let blocks: Vec<(usize, std::thread::ThreadId)> = FileBlocks::new(file, stages).collect();
            let mut threads: Vec<_> = blocks.iter().map(|&(_, thread)| thread).collect();
            threads.dedup();
            (blocks.iter().map(|&(n, _)| n).sum(), threads)
        };
        // Ten lines of three bytes: one block of 30.
        assert_eq!(threads_of(10), (10, vec![std::thread::current().id()]));
        let (records, threads) = threads_of(100);
        assert_eq!(records, 100);
        assert!(!threads.contains(&std::thread::current().id()), "{threads:?}");
    }
}
