//! `eval`: the pipeline over bounded inputs. Reads every input, evaluates its events and
//! summarizes every window into alerts at the end.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::alerts::{Output, WindowSpec};
use crate::events::{Input, InputError, InputFormat, ProcessEvent, Reader, Record, lineage};
use crate::pipeline::{Pipeline, PipelineOptions, WindowClosing};
use crate::runtime::CompiledRule;

pub use crate::pipeline::{DEFAULT_BATCH_SIZE, Diagnostic, PipelineError as EvalError, RuleSummary, Summary};

/// How an evaluation runs.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// How matches are grouped in time.
    pub window: WindowSpec,
    /// Events per rule call, at most: a file evaluated in blocks (see [`evaluate`]) ends
    /// a batch with each block, whatever the number of jobs.
    pub batch_size: usize,
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
    /// Bytes of process creations the first pass over one Windows log keeps for the
    /// second (0: the second pass reads them again). The output is the same whatever it is.
    pub kept_event_bytes: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            window: WindowSpec::Every(3_600_000),
            batch_size: DEFAULT_BATCH_SIZE,
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
/// A Windows log is taken in two passes, so that a child's grandparent is known whatever
/// the order of files and records: the first pass counts every record and fills the
/// lineage table from the process creations, the second evaluates the process creations.
/// The first pass keeps the process creations it read, up to `kept_event_bytes` of them, and the
/// second evaluates those; past that, where the first pass could note where their lines
/// start (JSON lines in a plain file), the second reads only those lines, and otherwise
/// it reads the input again and takes its events. Defender inputs carry their grandparent
/// and standard input cannot be read twice: those are read once. A regular file of
/// Defender JSON lines is read once in blocks, each block evaluated by the worker that read
/// and parsed it (one job: on the calling thread), so that nothing of its events but the
/// matches crosses between threads.
pub fn evaluate(
    rules: &[Arc<CompiledRule>],
    inputs: &[Input],
    options: &EvalOptions,
    output: &mut dyn Output,
    diagnose: &mut dyn FnMut(Diagnostic<'_>),
) -> Result<Summary, EvalError> {
    // Open every input first: a missing file is an error before any output.
    let readers = inputs
        .iter()
        .map(|input| match is_defender_json_lines_file(input, options.input_format)? {
            true => Ok(None),
            false => input.open_counted(options.input_format, options.progress.clone()).map(Some),
        })
        .collect::<Result<Vec<_>, InputError>>()?;
    let mut evaluation = Pipeline::new(rules, options.pipeline(), output, diagnose)?;
    let mut second_passes = Vec::with_capacity(inputs.len());
    for reader in readers {
        second_passes.push(match reader {
            Some(reader) => first_pass(reader, &mut evaluation, options.kept_event_bytes)?,
            None => SecondPass::Blocks,
        });
    }
    for (input, pass) in inputs.iter().zip(second_passes) {
        match pass {
            SecondPass::Nothing => {}
            SecondPass::Blocks => evaluation.evaluate_blocks(input, options.progress.clone())?,
            SecondPass::Rest(records) => {
                for record in records {
                    evaluation.record(record)?;
                }
            }
            SecondPass::Kept(events) => {
                for event in events {
                    evaluation.record(Record::Event(Box::new(event)))?;
                }
            }
            SecondPass::Lines(lines) => {
                for record in input.read_lines_at(lines)? {
                    match record {
                        // An event line that no longer reads (the file changed in between)
                        // is reported: its events were not counted in the first pass.
                        Record::Event(_) | Record::Rejected(_) => evaluation.record(record)?,
                        // Records of other kinds on an event's line were counted already.
                        Record::Skipped(_) => {}
                    }
                }
            }
            SecondPass::Whole => {
                // The first pass counted every record: only the events count now.
                for record in input.open(options.input_format)? {
                    if let Record::Event(_) = record {
                        evaluation.record(record)?;
                    }
                }
            }
        }
    }
    evaluation.finish()
}

/// What is left to read of an input after its first pass.
enum SecondPass {
    /// Nothing: the input held no event.
    Nothing,
    /// The rest of the records, read once (a Defender input, standard input).
    Rest(Box<dyn Iterator<Item = Record>>),
    /// The process creations themselves, kept by the first pass as they were read.
    Kept(Vec<ProcessEvent>),
    /// The lines of the process creations, by offset and line number.
    Lines(Vec<(u64, u64)>),
    /// The whole input again, for its events.
    Whole,
    /// A file of Defender JSON lines, read once in blocks, each evaluated by the worker
    /// that parsed it.
    Blocks,
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
    // A named pipe cannot be read twice, nor a followed file be read to its end.
    if !input.is_regular_file() {
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

/// Line offsets noted per input at most (16 bytes each); past that, the second pass reads
/// the whole input again.
const MAX_NOTED_LINES: usize = 4 << 20;

/// Bytes of process creations (their text and their fields) that the first pass of one
/// input keeps for the second by default, which then reads nothing again: about 40,000
/// events. In real logs few events are process creations, so most inputs stay under it;
/// past it the kept events are dropped and the second pass reads them again.
pub const DEFAULT_KEPT_EVENT_BYTES: usize = 64 << 20;

/// The first pass over one input: see [`evaluate`].
fn first_pass(
    mut reader: Reader,
    evaluation: &mut Pipeline<'_>,
    kept_event_bytes: usize,
) -> Result<SecondPass, EvalError> {
    let noting = reader.has_line_offsets();
    if !reader.is_rereadable() {
        return Ok(SecondPass::Rest(Box::new(reader)));
    }
    let (mut lines, mut whole, mut events) = (Vec::new(), !noting, 0u64);
    let (mut kept, mut kept_bytes) = (Some(Vec::new()), 0usize);
    while let Some(record) = reader.next() {
        let Record::Event(event) = record else {
            evaluation.record(record)?;
            continue;
        };
        if events == 0 && event.source_format().is_defender() {
            let first = std::iter::once(Record::Event(event));
            return Ok(SecondPass::Rest(Box::new(first.chain(reader))));
        }
        events += 1;
        // The event stays as read: the second pass resolves it against the whole table.
        evaluation.lineage_mut().learn(&event);
        match event.line_offset() {
            // Several events of one line (`{"records": [..]}`) are noted once.
            Some(offset) if !whole && lines.last().is_none_or(|&(last, _)| last < offset) => {
                lines.push((offset, event.origin().position.number()));
                if lines.len() > MAX_NOTED_LINES {
                    (whole, lines) = (true, Vec::new());
                }
            }
            Some(_) if !whole => {}
            _ => whole = true,
        }
        if let Some(events) = &mut kept {
            kept_bytes += event.size_in_memory();
            if kept_bytes <= kept_event_bytes {
                events.push(*event);
            } else {
                kept = None;
            }
        }
    }
    Ok(match (events, kept, whole) {
        (0, _, _) => SecondPass::Nothing,
        (_, Some(kept), _) => SecondPass::Kept(kept),
        (_, None, true) => SecondPass::Whole,
        (_, None, false) => SecondPass::Lines(lines),
    })
}

/// Evaluates `rules` over in-memory `records` (rule test cases, tests), with lineage
/// resolved in arrival order.
pub fn evaluate_records_with(
    rules: &[Arc<CompiledRule>],
    records: impl Iterator<Item = Record>,
    options: &EvalOptions,
    output: &mut dyn Output,
    diagnose: &mut dyn FnMut(Diagnostic<'_>),
) -> Result<Summary, EvalError> {
    let mut evaluation = Pipeline::new(rules, options.pipeline(), output, diagnose)?;
    for record in records {
        evaluation.record(record)?;
    }
    evaluation.finish()
}
