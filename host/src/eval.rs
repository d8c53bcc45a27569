//! `eval`: the pipeline over bounded inputs. Reads every input, evaluates its events and
//! summarizes every window into alerts at the end.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::alerts::WindowSpec;
use crate::events::input::Reader;
use crate::events::read_ahead::{Groups, Opener, ReadAhead};
use crate::events::{Input, InputError, InputFormat, ProcessEvent, Record, lineage};
use crate::pipeline::{Pipeline, PipelineOptions, WindowClosing};
use crate::runtime::CompiledRule;
use crate::sinks::Sink;

pub use crate::pipeline::{
    DEFAULT_BATCH_SIZE, DEFAULT_MAX_WINDOW_BYTES, DEFAULT_MAX_WINDOW_MATCHES, Diagnostic,
    PipelineError as EvalError, RuleSummary, Summary,
};

/// How an evaluation runs.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// How matches are grouped in time.
    pub window: WindowSpec,
    /// Events per rule call, at most: a file evaluated in blocks (see [`evaluate`]) ends
    /// a batch with each block, whatever the number of jobs.
    pub batch_size: usize,
    /// A device's matches of one rule one window holds at most (see
    /// [`crate::pipeline::PipelineOptions::max_window_matches`]).
    pub max_window_matches: usize,
    /// Bytes the matches in open windows take together at most (see
    /// [`crate::pipeline::PipelineOptions::max_window_bytes`]).
    pub max_window_bytes: usize,
    /// The first rejected record ends the run with an error.
    pub strict: bool,
    /// Write every match instead of alerts.
    pub matches_only: bool,
    /// The input format (or [`InputFormat::Auto`]).
    pub input_format: InputFormat,
    /// Processes the lineage table holds at most.
    pub lineage_capacity: usize,
    /// Counts the bytes read from the inputs, for a progress bar.
    pub progress: Option<Arc<AtomicU64>>,
    /// Threads that evaluate batches, each with its own instance of every rule (1: the
    /// calling thread evaluates). The output is the same whatever the number.
    pub jobs: usize,
    /// Bytes of held-back process creations kept in memory, all inputs together (see
    /// [`evaluate`]; 0: a file is read again for each). For files the output is the same
    /// whatever it is.
    pub kept_event_bytes: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            window: WindowSpec::Every(3_600_000),
            batch_size: DEFAULT_BATCH_SIZE,
            max_window_matches: DEFAULT_MAX_WINDOW_MATCHES,
            max_window_bytes: DEFAULT_MAX_WINDOW_BYTES,
            strict: false,
            matches_only: false,
            input_format: InputFormat::Auto,
            lineage_capacity: lineage::DEFAULT_CAPACITY,
            progress: None,
            jobs: 1,
            kept_event_bytes: DEFAULT_KEPT_EVENT_BYTES,
        }
    }
}

/// Evaluates `rules` over `inputs`, writing to `output` and reporting to `diagnose`.
///
/// Every input is read once. A Windows process creation whose parent's creation has been
/// read already (by `ProcessGuid`) is evaluated at once, its grandparent filled from the
/// lineage table. One whose parent has not been read yet, or that is keyed by process id
/// (4688: which creation of a reused id is the parent depends on all of them), is learned
/// by the table and held back; when every input has been read, the held events are resolved
/// against the whole table and evaluated. So a child logged before its parent (another
/// file, records out of order) gets the grandparent a second pass would give it, without
/// a second pass. Held events are kept in memory up to `kept_event_bytes`; past that, a
/// file is read again at just their lines (JSON lines) or for just their records (other
/// formats), and a stream, which cannot be read again, has its events evaluated at once
/// with the lineage known then. With `--matches`, matches are written as they are found,
/// in reading order: once one event is held, every event after it is held too.
///
/// A regular file of Defender JSON lines is read in blocks, each block evaluated by the
/// worker that read and parsed it (one job: on the calling thread), so that nothing of its
/// events but the matches crosses between threads.
pub fn evaluate(
    rules: &[Arc<CompiledRule>],
    inputs: &[Input],
    options: &EvalOptions,
    output: &mut dyn Sink,
    diagnose: &mut dyn FnMut(Diagnostic<'_>),
) -> Result<Summary, EvalError> {
    // Several EVTX inputs are read at once (a triage collection is thousands of small files),
    // each parsed on the thread that reads it: they are opened without chunk workers of their
    // own, which would only compete.
    let named_evtx = |input: &Input| {
        matches!(options.input_format, InputFormat::Auto | InputFormat::Evtx)
            && input.format_by_name() == Some(InputFormat::Evtx)
    };
    let read_ahead = options.jobs > 1 && inputs.iter().filter(|input| named_evtx(input)).count() > 1;
    // Open every input first: a missing file is an error before any output. EVTX files read
    // ahead are opened by the threads that read them, once this one has seen that they open.
    let mut readers: Vec<Option<Reader>> = Vec::with_capacity(inputs.len());
    let mut rereading: Vec<Rereading> = Vec::with_capacity(inputs.len());
    let mut ahead: Vec<(usize, Opener)> = Vec::new();
    let prefetched = Arc::new(Prefetched::of(match read_ahead {
        true => {
            inputs.iter().filter(|input| named_evtx(input)).map(|input| input.clone().with_jobs(1)).collect()
        }
        false => Vec::new(),
    }));
    for (index, input) in inputs.iter().enumerate() {
        if read_ahead && named_evtx(input) {
            let regular_file = input.opens()?;
            let (prefetched, nth) = (prefetched.clone(), ahead.len());
            let (format, progress) = (options.input_format, options.progress.clone());
            ahead.push((index, Box::new(move || prefetched.open(nth, format, progress))));
            readers.push(None);
            rereading.push(if regular_file { Rereading::Records } else { Rereading::Impossible });
            continue;
        }
        let reader = match is_defender_json_lines_file(input, options.input_format)? {
            true => None,
            false => Some(input.open_counted(options.input_format, options.progress.clone())?),
        };
        rereading.push(match reader.as_ref().map(|r| (r.is_rereadable(), r.has_line_offsets())) {
            None | Some((false, _)) => Rereading::Impossible,
            Some((true, true)) => Rereading::Lines,
            Some((true, false)) => Rereading::Records,
        });
        readers.push(reader);
    }
    let mut pipeline = Pipeline::new(rules, options.pipeline(), output, diagnose)?;
    let mut held = Held::new(inputs.len(), options.kept_event_bytes);
    std::thread::scope(|scope| -> Result<(), EvalError> {
        let read_ahead = (!ahead.is_empty())
            .then(|| ReadAhead::start(scope, inputs.len(), ahead, options.jobs, FIRST_PASS_GROUPS));
        for (index, input) in inputs.iter().enumerate() {
            let failed = Cell::new(None);
            let records: Box<dyn Iterator<Item = Record>> =
                match (read_ahead.as_ref().and_then(|r| r.take(index)), readers[index].take()) {
                    (Some(groups), _) => Box::new(records_of(groups, &failed)),
                    (None, Some(reader)) => Box::new(reader),
                    (None, None) => {
                        pipeline.evaluate_blocks(input, options.progress.clone())?;
                        continue;
                    }
                };
            let rereading = rereading[index];
            let mut ordinal = 0u64;
            let mut line = LineEvents::default();
            for record in records {
                let Record::Event(mut event) = record else {
                    pipeline.record(record)?;
                    continue;
                };
                let nth_on_line = line.nth(event.line_offset());
                let this = ordinal;
                ordinal += 1;
                event.set_read_order(pipeline.next_read_order());
                // Matches are written as they are found: once one event waits, so do all
                // after it, and they come out in reading order.
                let in_order = !options.matches_only || held.is_empty();
                if in_order && pipeline.lineage_mut().is_final_for(&event) {
                    pipeline.record(Record::Event(event))?;
                    continue;
                }
                pipeline.lineage_mut().learn(&event);
                if let Some(event) = held.hold(index, event, rereading, this, nth_on_line) {
                    // Held back no more: a stream past the budget.
                    pipeline.record(Record::Event(event))?;
                }
            }
            if let Some(error) = failed.take() {
                return Err(error.into());
            }
        }
        Ok(())
    })?;
    held.evaluate(inputs, options.input_format, options.jobs, &mut pipeline)?;
    pipeline.finish()
}

/// How many inputs past the one being opened the system is asked to read into its page cache
/// (see [`Prefetched`]): as many as the reading threads may start ahead of the one taken.
const PREFETCHED_AHEAD: usize = 64;

/// The EVTX inputs read ahead, in order, each opened and asked of the system ahead of its
/// reading: a triage collection read for the first time comes from the disk, and its reading
/// threads waited for one file each; with the next files' reads already asked for, the disk
/// has many to serve at once. The file opened is kept for its reading, which does not open it
/// again ([`Prefetched::open`]).
struct Prefetched {
    inputs: Vec<Input>,
    opened: Vec<std::sync::Mutex<Prefetch>>,
}

/// Where an input's prefetch stands.
enum Prefetch {
    NotYet,
    Opened(std::fs::File),
    /// Its reading has begun: a prefetch now would only open it once more.
    Read,
}

impl Prefetched {
    fn of(inputs: Vec<Input>) -> Self {
        let opened = inputs.iter().map(|_| std::sync::Mutex::new(Prefetch::NotYet)).collect();
        Self { inputs, opened }
    }

    /// Prefetches input `nth + PREFETCHED_AHEAD` (and, for the first, the ones before it).
    fn ahead_of(&self, nth: usize) {
        let first = if nth == 0 { 1 } else { nth + PREFETCHED_AHEAD };
        for at in first..(nth + PREFETCHED_AHEAD + 1).min(self.inputs.len()) {
            let mut slot = self.opened[at].lock().expect("a prefetch does not panic");
            if matches!(*slot, Prefetch::NotYet)
                && let Some(file) = self.inputs[at].prefetch()
            {
                *slot = Prefetch::Opened(file);
            }
        }
    }

    /// Opens input `nth` for its reading (from its prefetched file, if it has one), and asks
    /// for the one `PREFETCHED_AHEAD` past it.
    fn open(
        &self,
        nth: usize,
        format: InputFormat,
        progress: Option<Arc<AtomicU64>>,
    ) -> Result<Reader, InputError> {
        self.ahead_of(nth);
        self.inputs[nth].open_counted_from(self.take(nth), format, progress)
    }

    /// Input `nth`'s file, if it was prefetched; no prefetch of it happens after this.
    fn take(&self, nth: usize) -> Option<std::fs::File> {
        let mut slot = self.opened[nth].lock().expect("a prefetch does not panic");
        match std::mem::replace(&mut *slot, Prefetch::Read) {
            Prefetch::Opened(file) => Some(file),
            Prefetch::NotYet | Prefetch::Read => None,
        }
    }
}

/// Record groups (an EVTX chunk's records) an input read ahead may have waiting in the first
/// pass, and when its held events are read again. The second pass runs while the windows are
/// at their fullest: with 8 there, the catalog over the 5,000 EVTX files peaked at 364-389
/// MiB instead of 290-300 (with 2, 344 when every held event is read again; with 1, 291).
const FIRST_PASS_GROUPS: usize = 8;
const REREAD_GROUPS: usize = 1;

/// How an input's held events can be found again once they are no longer kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rereading {
    /// At their lines (a file of JSON lines).
    Lines,
    /// By their place among the input's events, reading it again (other files).
    Records,
    /// Not at all (a stream).
    Impossible,
}

/// Which event of its line an event is (a line of `{"records": [..]}` holds many).
#[derive(Default)]
struct LineEvents {
    offset: Option<u64>,
    nth: u32,
}

impl LineEvents {
    fn nth(&mut self, offset: Option<u64>) -> u32 {
        match offset {
            Some(offset) if self.offset == Some(offset) => self.nth += 1,
            _ => (self.offset, self.nth) = (offset, 0),
        }
        self.nth
    }
}

/// An event held back until every input is read.
enum HeldEvent {
    /// Kept as it was read.
    Kept(Box<ProcessEvent>),
    /// At this line of a JSON lines file (offset, line number), the `nth` event on it; and
    /// its place in the reading order.
    Line { offset: u64, number: u64, nth: u32, order: u64 },
    /// The input's event at this place (from 0), and its place in the reading order.
    Record { ordinal: u64, order: u64 },
}

/// The events held back, per input in reading order, and the memory they take.
struct Held {
    per_input: Vec<Vec<HeldEvent>>,
    kept_bytes: usize,
    budget: usize,
    /// Held events noted by place, all inputs together.
    noted: usize,
}

/// Events held by place at most (about 24 bytes each); past that, even a file's events are
/// evaluated at once.
const MAX_NOTED_EVENTS: usize = 4 << 20;

impl Held {
    fn new(inputs: usize, budget: usize) -> Self {
        Self { per_input: (0..inputs).map(|_| Vec::new()).collect(), kept_bytes: 0, budget, noted: 0 }
    }

    /// Whether no event is held.
    fn is_empty(&self) -> bool {
        self.per_input.iter().all(Vec::is_empty)
    }

    /// Holds `event` of input `index`; gives it back when it cannot be held.
    fn hold(
        &mut self,
        index: usize,
        mut event: Box<ProcessEvent>,
        rereading: Rereading,
        ordinal: u64,
        nth: u32,
    ) -> Option<Box<ProcessEvent>> {
        // Its text's room to grow is half of what a read event holds: without it, half as
        // many again are kept instead of read a second time.
        event.shrink_to_fit();
        let size = event.size_in_memory() * HELD_FOOTPRINT_NUMERATOR / HELD_FOOTPRINT_DENOMINATOR;
        // Once an input's events are held by their places, so are all its later ones: its kept
        // events are evaluated before those read again, so a later one kept (a small event
        // after one past the budget) came out of reading order.
        let by_place =
            matches!(self.per_input[index].last(), Some(HeldEvent::Line { .. } | HeldEvent::Record { .. }));
        if !by_place && self.kept_bytes + size <= self.budget {
            self.kept_bytes += size;
            self.per_input[index].push(HeldEvent::Kept(event));
            return None;
        }
        if self.noted >= MAX_NOTED_EVENTS {
            return Some(event);
        }
        let held = match (rereading, event.line_offset()) {
            (Rereading::Lines, Some(offset)) => HeldEvent::Line {
                offset,
                number: event.origin().position.number(),
                nth,
                order: event.read_order(),
            },
            (Rereading::Records, _) => HeldEvent::Record { ordinal, order: event.read_order() },
            _ => return Some(event),
        };
        self.noted += 1;
        self.per_input[index].push(held);
        None
    }

    /// Evaluates the held events, input by input in reading order, against the whole
    /// lineage table; those no longer kept are read again. With more than one job, the
    /// inputs read again by the events' places (EVTX files) are read several at once, as
    /// in the first pass, and taken in the same order.
    fn evaluate(
        self,
        inputs: &[Input],
        format: InputFormat,
        jobs: usize,
        pipeline: &mut Pipeline<'_>,
    ) -> Result<(), EvalError> {
        let by_place = |held: &Vec<HeldEvent>| held.iter().any(|e| matches!(e, HeldEvent::Record { .. }));
        let again: Vec<usize> = (0..inputs.len()).filter(|&i| by_place(&self.per_input[i])).collect();
        let readers: Vec<(usize, Opener)> = if jobs > 1 && again.len() > 1 {
            again
                .iter()
                .map(|&i| {
                    let input = inputs[i].clone().with_jobs(1);
                    (i, Box::new(move || input.open(format)) as Opener)
                })
                .collect()
        } else {
            Vec::new()
        };
        std::thread::scope(|scope| {
            let read_ahead = (!readers.is_empty())
                .then(|| ReadAhead::start(scope, inputs.len(), readers, jobs, REREAD_GROUPS));
            self.evaluate_in_order(inputs, format, read_ahead.as_ref(), pipeline)
        })
    }

    fn evaluate_in_order(
        self,
        inputs: &[Input],
        format: InputFormat,
        read_ahead: Option<&ReadAhead<'_>>,
        pipeline: &mut Pipeline<'_>,
    ) -> Result<(), EvalError> {
        for (index, (input, held)) in inputs.iter().zip(self.per_input).enumerate() {
            let mut kept = Vec::new();
            let (mut lines, mut records) = (Vec::new(), Vec::new());
            for event in held {
                match event {
                    HeldEvent::Kept(event) => kept.push(event),
                    HeldEvent::Line { offset, number, nth, order } => {
                        lines.push(((offset, number), nth, order))
                    }
                    HeldEvent::Record { ordinal, order } => records.push((ordinal, order)),
                }
            }
            for event in kept {
                pipeline.record(Record::Event(event))?;
            }
            if !lines.is_empty() {
                read_lines_again(input, lines, pipeline)?;
            }
            if !records.is_empty() {
                let mut wanted = records.into_iter().peekable();
                let failed = Cell::new(None);
                let records: Box<dyn Iterator<Item = Record>> = match read_ahead.and_then(|r| r.take(index)) {
                    Some(groups) => Box::new(records_of(groups, &failed)),
                    None => Box::new(input.open(format)?),
                };
                let events = records.filter(|r| matches!(r, Record::Event(_)));
                for (ordinal, mut record) in events.enumerate() {
                    if let Some(&(_, order)) = wanted.peek().filter(|(o, _)| *o == ordinal as u64) {
                        wanted.next();
                        if let Record::Event(event) = &mut record {
                            event.set_read_order(order);
                        }
                        pipeline.record(record)?;
                    }
                    if wanted.peek().is_none() {
                        break;
                    }
                }
                if let Some(error) = failed.take() {
                    return Err(error.into());
                }
            }
        }
        Ok(())
    }
}

/// The records of an input read ahead, ending where it could not be opened: the error is
/// left in `failed`.
fn records_of(groups: Groups, failed: &Cell<Option<InputError>>) -> impl Iterator<Item = Record> + '_ {
    groups.map_while(move |group| group.map_err(|error| failed.set(Some(error))).ok()).flatten()
}

/// Evaluates the `nth` event of each of `lines` ((offset, line number), nth, reading
/// order), read again.
fn read_lines_again(
    input: &Input,
    lines: Vec<((u64, u64), u32, u64)>,
    pipeline: &mut Pipeline<'_>,
) -> Result<(), EvalError> {
    let mut wanted: Vec<(u64, u64)> = lines.iter().map(|&(line, _, _)| line).collect();
    wanted.dedup();
    let mut expected = lines.into_iter().map(|((_, number), nth, order)| (number, nth, order)).peekable();
    let mut line = LineEvents::default();
    for mut record in input.read_lines_at(wanted)? {
        let number = match &record {
            Record::Event(event) => event.origin().position.number(),
            Record::Rejected(error) => error.origin.position.number(),
            // Records of other kinds on an event's line were counted already.
            Record::Skipped(_) => continue,
        };
        // Lines before this one that no longer hold their events (the file changed in
        // between) have nothing more to give.
        while expected.peek().is_some_and(|&(n, _, _)| n < number) {
            expected.next();
        }
        match &mut record {
            Record::Event(event) => {
                let nth = line.nth(event.line_offset());
                if let Some(&(_, _, order)) = expected.peek().filter(|&&(n, i, _)| (n, i) == (number, nth)) {
                    expected.next();
                    event.set_read_order(order);
                    pipeline.record(record)?;
                }
            }
            // A line that no longer reads is reported in its events' place: they were not
            // counted yet.
            _ => {
                while expected.peek().is_some_and(|&(n, _, _)| n == number) {
                    expected.next();
                }
                pipeline.record(record)?;
            }
        }
    }
    Ok(())
}

impl EvalOptions {
    /// The pipeline's part of these options: windows close at the end.
    pub fn pipeline(&self) -> PipelineOptions {
        PipelineOptions {
            window: self.window,
            closing: WindowClosing::AtEnd,
            batch_size: self.batch_size,
            strict: self.strict,
            matches_only: self.matches_only,
            lineage_capacity: self.lineage_capacity,
            jobs: self.jobs,
            max_window_matches: self.max_window_matches,
            max_window_bytes: self.max_window_bytes,
        }
    }
}

/// Records a file is looked at for its first event, to tell whether it is Defender JSON
/// lines (see [`is_defender_json_lines_file`]).
const SNIFFED_RECORDS: usize = 1000;
/// Bytes of a file parsed at once while looking for its first event.
const SNIFFED_BLOCK_BYTES: u64 = 64 * 1024;

/// Whether `input` is a regular file of JSON lines whose first event (among its first
/// records) is a Defender row without lineage keys. Such a file is read once, and each
/// block of its lines is evaluated on the thread that read and parsed it: nothing of its
/// events crosses to another thread but the matches. Any other input takes the passes of
/// [`evaluate`].
fn is_defender_json_lines_file(input: &Input, format: InputFormat) -> Result<bool, InputError> {
    // A file named or declared as another format is read as that (or decompressed): it has
    // no line offsets, and is not opened twice to find out (each file of a folder of EVTX
    // files was, before any was read).
    let declared = match format {
        InputFormat::Auto => input.format_by_name(),
        format => Some(format),
    };
    if declared.is_some_and(|format| format != InputFormat::Jsonl) {
        return Ok(false);
    }
    // A named pipe cannot be read twice, nor a followed file be read to its end.
    if !input.is_regular_file() {
        return Ok(false);
    }
    // A file of one block has nothing to share among workers, and starting them (a thread
    // and an instance of every rule each) cost more than its reading.
    if input.fits_one_block() {
        return Ok(false);
    }
    // Small blocks: the first event is usually on the first line, and the file is read
    // again from its start.
    let reader = input.clone().with_jobs(1).with_block_bytes(SNIFFED_BLOCK_BYTES).open(format)?;
    if !reader.has_line_offsets() {
        return Ok(false);
    }
    Ok(reader.take(SNIFFED_RECORDS).find_map(|record| match record {
        Record::Event(event) => Some(event.source_format().is_defender() && event.lineage().is_none()),
        _ => None,
    }) == Some(true))
}

/// Bytes of held-back process creations (see [`evaluate`]) kept in memory by default: about
/// 72,000 events of a real 4688 log. With 96 MiB, the bench's folder of 5,000 EVTX files
/// (98,000 process creations) read some of its files a second time: Soft Cell took 1.03-1.12
/// s on it, against 0.79-0.85 s with every held event kept. With 128 MiB its peak RSS is 171
/// MB. Few events of a real log are process creations, and fewer are held, so most inputs
/// stay under it; past it a file is read again at the held events' places.
pub const DEFAULT_KEPT_EVENT_BYTES: usize = 128 << 20;

/// What a held event takes of the process's memory, against what it holds itself (its
/// text, its fields, its lineage keys): 11/10. Measured on the 5,000 copies of the shared
/// EVTX files, one job: the peak RSS rose by 32.8 MB for 30.2 MB of events held and by 64.3
/// MB for 60.4 MB (1.07). Counted, the budget is the memory the held events really take.
/// It was 5/3 while a Windows event's text grew as it was written: the allocator's pages
/// that the grown texts left stayed in use.
const HELD_FOOTPRINT_NUMERATOR: usize = 11;
const HELD_FOOTPRINT_DENOMINATOR: usize = 10;

/// Evaluates `rules` over in-memory `records` (rule test cases, tests), with lineage
/// resolved in arrival order.
pub fn evaluate_records_with(
    rules: &[Arc<CompiledRule>],
    records: impl Iterator<Item = Record>,
    options: &EvalOptions,
    output: &mut dyn Sink,
    diagnose: &mut dyn FnMut(Diagnostic<'_>),
) -> Result<Summary, EvalError> {
    let mut evaluation = Pipeline::new(rules, options.pipeline(), output, diagnose)?;
    for record in records {
        evaluation.record(record)?;
    }
    evaluation.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn content(file: std::fs::File) -> String {
        let mut text = String::new();
        (&file).read_to_string(&mut text).expect("a prefetched file reads");
        text
    }

    #[test]
    fn each_input_gets_its_own_prefetched_file_once_and_none_after_its_reading_began() {
        let dir = tempfile::tempdir().unwrap();
        let count = PREFETCHED_AHEAD + 10;
        let inputs: Vec<Input> = (0..count)
            .map(|at| {
                let path = dir.path().join(format!("{at}.evtx"));
                std::fs::write(&path, format!("input {at}")).unwrap();
                Input::file(path)
            })
            .collect();
        let prefetched = Prefetched::of(inputs);
        // The first opening asks for the next PREFETCHED_AHEAD; its own is opened by its reader.
        prefetched.ahead_of(0);
        assert!(prefetched.take(0).is_none());
        for at in 1..=PREFETCHED_AHEAD {
            assert_eq!(content(prefetched.take(at).expect("prefetched")), format!("input {at}"));
            assert!(prefetched.take(at).is_none(), "input {at} handed out twice");
        }
        // An input whose reading began before its prefetch is not opened again for nothing.
        let late = PREFETCHED_AHEAD + 3;
        assert!(prefetched.take(late).is_none());
        prefetched.ahead_of(3);
        assert!(prefetched.take(late).is_none());
        prefetched.ahead_of(4);
        assert_eq!(content(prefetched.take(late + 1).expect("prefetched")), format!("input {}", late + 1));
        // Past the last input there is nothing to ask for.
        prefetched.ahead_of(count - 1);
    }
}
