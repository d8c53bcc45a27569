//! The chunks of a binary EVTX file, in the order the evtx crate's `EvtxParser::into_chunks`
//! gives them, read with one read each and without copying the empty ones.
//!
//! A new Windows log is created at 1 MiB and 17 chunks, and a triage collection is
//! thousands of such files, most of whose chunks are still zeros. The crate reads every
//! chunk into a fresh buffer (several reads each) and checks it byte by byte; on a folder
//! of such files that was a sixth of the run. This walk is the crate's, step for step (the
//! differential test below holds it to that on every shared file and on damaged, wrapped
//! and dirty copies of them): from the chunk whose header names the oldest records to the
//! end of the file, then from its start; an empty chunk passed over; a chunk past the
//! count the file's size gives read while the file has one.
//!
//! Where the file system knows a file's holes (`SEEK_DATA`), a chunk that lies wholly in
//! one is empty without being read: copies of such logs are sparse, and reading their
//! holes was a fifth of a folder's run (the kernel fills the buffer with zeros).

use std::io::{Read, Seek, SeekFrom};

use evtx::{EvtxChunkData, EvtxChunkHeader};

/// The file header's size and the size of a chunk, as the crate places chunks.
pub(super) const FILE_HEADER_BYTES: u64 = 4096;
pub(super) const CHUNK_BYTES: usize = 65536;
pub(super) const CHUNK_HEADER_BYTES: usize = 512;
/// The size of a record's header, before its binary XML.
pub(super) const RECORD_HEADER_BYTES: usize = 24;

/// The chunks of one file, as [`evtx::EvtxParser::into_chunks`] gives them.
pub(super) struct ChunkWalker<R> {
    stream: R,
    /// The chunks the file's size holds past its header block (the crate's count).
    count: u64,
    /// Where the walk starts: the chunk whose header names the lowest record id.
    oldest: u64,
    next: u64,
    /// Whether the walk has gone past the end of the file, on to its first chunk.
    wrapped: bool,
    /// A chunk's bytes as read; an empty chunk leaves it for the next. Allocated on the
    /// first read and freed at the end: every input is opened before the first is read.
    buffer: Vec<u8>,
    holes: Holes,
    size: u64,
    /// Chunks read from the stream (not told empty by their holes).
    chunks_read: u64,
    /// Whether a chunk is read only up to its free space, where it can be (see
    /// [`ChunkWalker::read_partially`]).
    partial: bool,
    /// The headers of the first chunks, by number, as the search for the oldest read them:
    /// a chunk read up to its free space starts from its header without reading it again.
    headers: Vec<Option<[u8; CHUNK_HEADER_BYTES]>>,
}

/// How many chunks' headers [`ChunkWalker`] keeps from its search for the oldest: the logs
/// of a triage collection have one to seventeen chunks.
const HEADERS_KEPT: u64 = 32;

/// Where a file's data lies, as its file system says: a range before the next offset that
/// holds data is a hole, and reads as zeros. File systems may call a hole data, never data
/// a hole, so a range this calls zeros is zeros.
pub(in crate::events) struct Holes {
    /// The file, through its own descriptor (which shares the stream's offset: every read
    /// of the walk seeks first).
    file: Option<std::fs::File>,
    /// The last answer: from `.0` on, the first data is at `.1`.
    known: (u64, u64),
}

impl Holes {
    /// A stream whose holes are not known: every chunk is read.
    pub(in crate::events) fn unknown() -> Self {
        Holes { file: None, known: (0, 0) }
    }

    /// The holes of `file`, as far as its file system tells them.
    pub(in crate::events) fn of(file: &std::fs::File) -> Self {
        Holes { file: file.try_clone().ok(), known: (0, 0) }
    }

    /// Whether `start..end` (within the file) is known to hold only zeros.
    fn zeros(&mut self, start: u64, end: u64) -> bool {
        if !(self.known.0 <= start && end <= self.known.1) {
            let Some(file) = &self.file else { return false };
            match next_data(file, start) {
                Some(data) => self.known = (start, data),
                None => {
                    // Not told: read every chunk from here on.
                    self.file = None;
                    return false;
                }
            }
        }
        self.known.0 <= start && end <= self.known.1
    }
}

/// The first offset at or after `from` that holds data (the file's end past its last data);
/// `None` when the file system does not say.
#[cfg(target_os = "linux")]
fn next_data(file: &std::fs::File, from: u64) -> Option<u64> {
    match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(from)) {
        Ok(data) => Some(data),
        // No data from `from` to the end of the file (which is past `from`: the caller asks
        // only within the file).
        Err(rustix::io::Errno::NXIO) => Some(u64::MAX),
        Err(_) => None,
    }
}

#[cfg(not(target_os = "linux"))]
fn next_data(_file: &std::fs::File, _from: u64) -> Option<u64> {
    None
}

/// Why a chunk could not be taken, as the crate says it.
pub(super) type ChunkFailure = String;

impl<R: Read + Seek> ChunkWalker<R> {
    /// The walk over `stream`, a file whose header block is `header_block_bytes` long (as
    /// its header says: the crate counts chunks from there) and `size` bytes in all, whose
    /// `holes` are read as zeros without reading them.
    pub(super) fn new(stream: R, holes: Holes, header_block_bytes: u64, size: u64) -> Self {
        let mut walker = ChunkWalker {
            stream,
            count: size.saturating_sub(header_block_bytes) / CHUNK_BYTES as u64,
            oldest: 0,
            next: 0,
            wrapped: false,
            buffer: Vec::new(),
            holes,
            size,
            chunks_read: 0,
            partial: false,
            headers: Vec::new(),
        };
        walker.oldest = walker.oldest_chunk();
        walker.next = walker.oldest;
        walker
    }

    /// Reads each chunk that lies wholly in the file and whose header is well formed only up
    /// to its free space (the header's `free_space_offset`), where its records end: a log's
    /// last chunk, and a small log's only one, is mostly unused, and copying the whole of it
    /// was a tenth of a folder's run. Such a chunk's data is shorter than [`CHUNK_BYTES`];
    /// [`ChunkWalker::complete`] reads the rest when anything past the part read is needed.
    pub(super) fn read_partially(&mut self) {
        self.partial = true;
    }

    /// `chunk`, read up to its free space, read whole: what reading it whole at first gives.
    pub(super) fn complete(&mut self, chunk: EvtxChunkData) -> Result<EvtxChunkData, ChunkFailure> {
        let number = chunk.number.expect("a chunk the walk read has its number");
        let mut data = chunk.data;
        let rest = (CHUNK_BYTES - data.len()) as u64;
        data.reserve_exact(rest as usize);
        let start = Self::offset(number) + data.len() as u64;
        self.stream.seek(SeekFrom::Start(start)).map_err(|e| format!("seeking to it: {e}"))?;
        let read = (&mut self.stream).take(rest).read_to_end(&mut data);
        if data.len() < CHUNK_BYTES || read.is_err() {
            return Err(incomplete());
        }
        chunk_of(data, number)
    }

    fn offset(number: u64) -> u64 {
        FILE_HEADER_BYTES + number * CHUNK_BYTES as u64
    }

    /// The chunk whose header names the lowest first record id (0 when none does): where
    /// Windows starts reading a log that has wrapped around.
    fn oldest_chunk(&mut self) -> u64 {
        let mut oldest = (u64::MAX, 0);
        let mut header = [0; CHUNK_HEADER_BYTES];
        for number in 0..self.count {
            let start = Self::offset(number);
            if self.holes.zeros(start, start + CHUNK_HEADER_BYTES as u64) {
                // A header of zeros names no records.
                continue;
            }
            if self.stream.seek(SeekFrom::Start(Self::offset(number))).is_err()
                || self.stream.read_exact(&mut header).is_err()
            {
                break;
            }
            if number < HEADERS_KEPT {
                self.headers.resize(number as usize, None);
                self.headers.push(Some(header));
            }
            // A header whose range is reversed says nothing about where its records belong.
            if let Ok(chunk) = EvtxChunkHeader::from_bytes(&header)
                && chunk.first_event_record_id <= chunk.last_event_record_id
                && chunk.first_event_record_id < oldest.0
            {
                oldest = (chunk.first_event_record_id, number);
            }
        }
        oldest.1
    }

    /// Chunk `number`: `Ok(None)` when it is all zeros, `Err` when it cannot be read whole
    /// or its header is bad.
    fn read(&mut self, number: u64) -> Result<Option<EvtxChunkData>, ChunkFailure> {
        let start = Self::offset(number);
        let end = start.saturating_add(CHUNK_BYTES as u64);
        if end <= self.size && self.holes.zeros(start, end) {
            return Ok(None);
        }
        self.chunks_read += 1;
        // Read into the buffer's spare capacity: a file fills it without its being zeroed
        // first (`resize` zeroed 64 KiB for every chunk, 9% of the instructions of a folder
        // of EVTX files).
        self.buffer.clear();
        self.buffer.reserve_exact(CHUNK_BYTES);
        let partial = self.partial && end <= self.size;
        let kept = self.headers.get(number as usize).copied().flatten().filter(|_| partial);
        let from = Self::offset(number) + if kept.is_some() { CHUNK_HEADER_BYTES as u64 } else { 0 };
        self.stream.seek(SeekFrom::Start(from)).map_err(|e| format!("seeking to it: {e}"))?;
        if partial {
            // The header first (as the search for the oldest read it, if it did); then,
            // when it is well formed and its free space starts within the chunk, only up
            // to there.
            if let Some(header) = kept {
                self.buffer.extend_from_slice(&header);
            } else {
                let read = (&mut self.stream).take(CHUNK_HEADER_BYTES as u64).read_to_end(&mut self.buffer);
                if read.is_err() {
                    return Err(incomplete());
                }
            }
            if let Some(used) = used_bytes(&self.buffer) {
                let more = (used - self.buffer.len()) as u64;
                let read = (&mut self.stream).take(more).read_to_end(&mut self.buffer);
                if read.is_err() || self.buffer.len() < used {
                    return Err(incomplete());
                }
                return chunk_of(std::mem::take(&mut self.buffer), number).map(Some);
            }
        }
        let rest = (CHUNK_BYTES - self.buffer.len()) as u64;
        let read = (&mut self.stream).take(rest).read_to_end(&mut self.buffer);
        if read.is_err() || self.buffer.len() < CHUNK_BYTES {
            return Err(incomplete());
        }
        if all_zeros(&self.buffer) {
            return Ok(None);
        }
        chunk_of(std::mem::take(&mut self.buffer), number).map(Some)
    }

    /// The first chunk from `number` on and before `end` that is not empty, and its number.
    fn find_next(&mut self, mut number: u64, end: u64) -> Option<(Result<EvtxChunkData, ChunkFailure>, u64)> {
        loop {
            if number >= end {
                return None;
            }
            match self.read(number) {
                // Past the count, a chunk that cannot be read is the end of the file.
                Err(_) if number >= self.count => return None,
                Err(failure) => return Some((Err(failure), number)),
                Ok(None) => number = number.checked_add(1)?,
                Ok(Some(chunk)) => return Some((Ok(chunk), number)),
            }
        }
    }
}

impl<R: Read + Seek> Iterator for ChunkWalker<R> {
    type Item = Result<EvtxChunkData, ChunkFailure>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // Once it has wrapped around, the walk ends where it started.
            let end = if self.wrapped { self.oldest } else { u64::MAX };
            if let Some((chunk, number)) = self.find_next(self.next, end) {
                self.next = number.checked_add(1)?;
                return Some(chunk);
            }
            if self.wrapped || self.oldest == 0 {
                self.buffer = Vec::new();
                return None;
            }
            self.wrapped = true;
            self.next = 0;
        }
    }
}

/// Chunk `number` of the file, from its bytes (whole, or up to its free space). Checksums
/// are not validated, as the crate's settings have it by default: a chunk whose CRC is off
/// still has records worth reading.
fn chunk_of(data: Vec<u8>, number: u64) -> Result<EvtxChunkData, ChunkFailure> {
    let mut chunk = EvtxChunkData::new(data, false).map_err(|e| crate::errors::with_sources(&e))?;
    chunk.number = Some(number);
    Ok(chunk)
}

/// Where the records of the chunk whose first bytes are `header` end, when it is worth reading
/// only that far: the header is a chunk's (its magic), and its free space starts past the
/// header and before the chunk's end.
pub(super) fn used_bytes(header: &[u8]) -> Option<usize> {
    if header.len() < CHUNK_HEADER_BYTES || !header.starts_with(b"ElfChnk\0") {
        return None;
    }
    let free_space = u32::from_le_bytes(header[48..52].try_into().ok()?) as usize;
    (CHUNK_HEADER_BYTES < free_space && free_space < CHUNK_BYTES).then_some(free_space)
}

fn incomplete() -> ChunkFailure {
    "the file ends inside it".to_owned()
}

/// Whether every byte is zero; block by block, so that the compiler checks each block with
/// wide registers, and a chunk with data stops at its first block.
fn all_zeros(bytes: &[u8]) -> bool {
    bytes.chunks(4096).all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use evtx::EvtxParser;

    use super::*;

    /// What a walk gives: each chunk's bytes, or that it failed.
    type Walk = Vec<Result<Vec<u8>, ()>>;

    fn walked(chunks: impl Iterator<Item = Result<Vec<u8>, ()>>) -> Walk {
        chunks.collect()
    }

    fn crate_walk(bytes: &[u8]) -> Option<Walk> {
        let parser = EvtxParser::from_buffer(bytes.to_vec()).ok()?;
        Some(walked(parser.into_chunks().map(|c| c.map(|c| c.data).map_err(|_| ()))))
    }

    fn our_walk(bytes: &[u8]) -> Option<Walk> {
        let parser = EvtxParser::from_buffer(bytes.to_vec()).ok()?;
        let block = u64::from(parser.header().header_block_size);
        let walker =
            ChunkWalker::new(Cursor::new(bytes.to_vec()), Holes::unknown(), block, bytes.len() as u64);
        Some(walked(walker.map(|c| c.map(|c| c.data).map_err(|_| ()))))
    }

    /// The walk reading chunks up to their free space, each such chunk then read whole; and
    /// how many were read so.
    fn partial_walk(bytes: &[u8]) -> Option<(Walk, usize)> {
        let parser = EvtxParser::from_buffer(bytes.to_vec()).ok()?;
        let block = u64::from(parser.header().header_block_size);
        let mut walker =
            ChunkWalker::new(Cursor::new(bytes.to_vec()), Holes::unknown(), block, bytes.len() as u64);
        walker.read_partially();
        let (mut walk, mut partial) = (Vec::new(), 0);
        while let Some(chunk) = walker.next() {
            let chunk = match chunk {
                Ok(chunk) if chunk.data.len() < CHUNK_BYTES => {
                    partial += 1;
                    walker.complete(chunk)
                }
                other => other,
            };
            walk.push(chunk.map(|c| c.data).map_err(|_| ()));
        }
        Some((walk, partial))
    }

    /// Copies of `bytes` damaged, emptied, moved around and cut, as logs are found.
    fn variants(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let header = FILE_HEADER_BYTES as usize;
        let chunks = (bytes.len() - header) / CHUNK_BYTES;
        let chunk = |n: usize| header + n * CHUNK_BYTES;
        let mut out = vec![("as it is".to_owned(), bytes.to_vec())];
        for n in 0..chunks.min(6) {
            let mut emptied = bytes.to_vec();
            emptied[chunk(n)..chunk(n + 1)].fill(0);
            out.push((format!("chunk {n} zeroed"), emptied));
            let mut bad_magic = bytes.to_vec();
            bad_magic[chunk(n)] ^= 0xff;
            out.push((format!("chunk {n}'s magic damaged"), bad_magic));
            let mut zero_header = bytes.to_vec();
            zero_header[chunk(n)..chunk(n) + CHUNK_HEADER_BYTES].fill(0);
            out.push((format!("chunk {n}'s header zeroed, its records kept"), zero_header));
            let mut one_byte = bytes.to_vec();
            one_byte[chunk(n + 1) - 1] = 1;
            out.push((format!("chunk {n}'s last byte set"), one_byte));
            let mut reversed = bytes.to_vec();
            let first = chunk(n) + 24;
            reversed[first..first + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            out.push((format!("chunk {n}'s record range reversed"), reversed));
        }
        if chunks >= 2 {
            // A log that has wrapped around: its chunks rotated.
            for by in 1..chunks.min(4) {
                let mut rotated = bytes[..header].to_vec();
                for n in 0..chunks {
                    let from = (n + by) % chunks;
                    rotated.extend_from_slice(&bytes[chunk(from)..chunk(from + 1)]);
                }
                rotated.extend_from_slice(&bytes[chunk(chunks)..]);
                out.push((format!("rotated by {by}"), rotated));
            }
        }
        // Dirty: chunks past the count the size gives, and a file cut inside one.
        let mut dirty = bytes.to_vec();
        dirty.extend_from_slice(&bytes[chunk(0)..chunk(1)]);
        out.push(("a copy of chunk 0 appended".to_owned(), dirty.clone()));
        dirty.extend_from_slice(&bytes[chunk(0)..chunk(0) + 1000]);
        out.push(("and a part of one".to_owned(), dirty));
        let mut zeros_then_chunk = bytes.to_vec();
        zeros_then_chunk.extend(std::iter::repeat_n(0, CHUNK_BYTES));
        zeros_then_chunk.extend_from_slice(&bytes[chunk(0)..chunk(1)]);
        out.push(("an empty chunk and a chunk appended".to_owned(), zeros_then_chunk));
        for cut in [header + 100, chunk(1) + 20_000, bytes.len() - 1] {
            out.push((format!("cut at {cut}"), bytes[..cut.min(bytes.len())].to_vec()));
        }
        let mut bigger_block = bytes.to_vec();
        // The header block's size, as the header states it (which the crate counts from).
        bigger_block[40..42].copy_from_slice(&8192u16.to_le_bytes());
        out.push(("a header block of 8 KiB".to_owned(), bigger_block));
        out
    }

    #[test]
    fn the_walk_is_the_crates_on_every_shared_file_and_its_variants() {
        let dir = crate::events::windows::tests_shared_dir().join("evtx");
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.retain(|p| p.extension().is_some_and(|e| e == "evtx"));
        assert!(files.len() >= 10, "the shared EVTX files are there");
        let (mut compared, mut chunks, mut read_partially) = (0, 0, 0);
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            for (name, variant) in variants(&bytes) {
                let theirs = crate_walk(&variant);
                let ours = our_walk(&variant);
                assert_eq!(
                    ours.as_ref().map(|w| w.iter().map(|c| c.as_ref().map(Vec::len)).collect::<Vec<_>>()),
                    theirs.as_ref().map(|w| w.iter().map(|c| c.as_ref().map(Vec::len)).collect::<Vec<_>>()),
                    "{}: {name}",
                    file.display()
                );
                assert!(ours == theirs, "{}: {name}: the chunks' bytes differ", file.display());
                let partial = partial_walk(&variant);
                assert!(
                    partial.as_ref().map(|p| &p.0) == theirs.as_ref(),
                    "{}: {name}: read partially",
                    file.display()
                );
                read_partially += partial.map_or(0, |p| p.1);
                compared += 1;
                chunks += ours.map_or(0, |w| w.len());
            }
        }
        assert!(compared > 150 && chunks > 400, "{compared} files, {chunks} chunks");
        assert!(read_partially > 100, "{read_partially} chunks read up to their free space");
    }

    /// `bytes` written as a sparse file (its blocks of zeros left as holes, as a copy makes
    /// them), and the walk over that file: the chunks, and how many were read.
    fn sparse_walk(bytes: &[u8]) -> (Option<Walk>, u64) {
        use std::io::Write;
        let mut file = tempfile::tempfile().unwrap();
        for (n, block) in bytes.chunks(4096).enumerate() {
            if block.iter().any(|&b| b != 0) {
                file.seek(SeekFrom::Start(n as u64 * 4096)).unwrap();
                file.write_all(block).unwrap();
            }
        }
        file.set_len(bytes.len() as u64).unwrap();
        let Ok(parser) = EvtxParser::from_buffer(bytes.to_vec()) else { return (None, 0) };
        let block = u64::from(parser.header().header_block_size);
        let holes = Holes::of(&file);
        let mut walker = ChunkWalker::new(file, holes, block, bytes.len() as u64);
        let chunks = walked(walker.by_ref().map(|c| c.map(|c| c.data).map_err(|_| ())));
        (Some(chunks), walker.chunks_read)
    }

    #[test]
    fn a_sparse_files_holes_are_not_read_and_the_walk_is_the_same() {
        let dir = crate::events::windows::tests_shared_dir().join("evtx");
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.retain(|p| p.extension().is_some_and(|e| e == "evtx"));
        let (mut compared, mut read, mut in_file) = (0, 0, 0);
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            for (name, variant) in variants(&bytes) {
                let (ours, chunks_read) = sparse_walk(&variant);
                assert!(ours == crate_walk(&variant), "{}: {name}: the walks differ", file.display());
                compared += 1;
                read += chunks_read;
                in_file += (variant.len() as u64).saturating_sub(FILE_HEADER_BYTES) / CHUNK_BYTES as u64;
            }
        }
        // Most chunks of the shared files are a new log's empty ones: holes in these copies.
        assert!(compared > 150 && read * 2 < in_file, "{compared} files: {read} of {in_file} chunks read");
    }

    /// A stream that notes where each read from it began.
    struct Noting {
        inner: Cursor<Vec<u8>>,
        reads_at: Vec<u64>,
    }

    impl Read for Noting {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let at = self.inner.position();
            let n = self.inner.read(buf)?;
            if n > 0 {
                self.reads_at.push(at);
            }
            Ok(n)
        }
    }

    impl Seek for Noting {
        fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
            self.inner.seek(to)
        }
    }

    #[test]
    fn a_chunk_read_up_to_its_free_space_does_not_read_its_header_again() {
        let dir = crate::events::windows::tests_shared_dir().join("evtx");
        let mut checked = 0;
        for path in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
            if path.extension().is_none_or(|e| e != "evtx") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let block = u64::from(EvtxParser::from_buffer(bytes.clone()).unwrap().header().header_block_size);
            let stream = Noting { inner: Cursor::new(bytes.clone()), reads_at: Vec::new() };
            let mut walker = ChunkWalker::new(stream, Holes::unknown(), block, bytes.len() as u64);
            walker.read_partially();
            let chunks = walker.by_ref().filter(|chunk| chunk.is_ok()).count();
            // The search for the oldest chunk reads each header; the walk then reads on
            // from there, and no place of the file is read twice.
            let mut reads_at = walker.stream.reads_at.clone();
            let reads = reads_at.len();
            reads_at.sort_unstable();
            reads_at.dedup();
            assert_eq!(reads_at.len(), reads, "{}: a place read twice", path.display());
            assert!(chunks > 0, "{}", path.display());
            checked += 1;
        }
        assert!(checked >= 10, "the shared EVTX files are there");
    }

    #[test]
    fn only_a_chunk_of_zeros_is_empty() {
        let mut chunk = vec![0u8; CHUNK_BYTES];
        assert!(all_zeros(&chunk));
        for at in [0, 1, 4095, 4096, 30_000, CHUNK_BYTES - 1] {
            chunk[at] = 0x80;
            assert!(!all_zeros(&chunk), "{at}");
            chunk[at] = 0;
        }
    }
}
