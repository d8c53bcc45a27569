//! `eval`: reads inputs, feeds the events in batches to every rule, collects the matches
//! per rule and window, and summarizes each window into alerts at the end.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;

use crate::alerts::{Alert, Match, Output, WindowSpec};
use crate::events::blocks::Stage;
use crate::events::{
    Field, Input, InputError, InputFormat, Lineage, ProcessEvent, Reader, Record, RecordError, lineage,
};
use crate::in_order::InOrder;
use crate::runtime::{CompiledRule, Instances, RuleError, RuleInstance};

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

/// Events per rule call by default: large enough that the per-call cost vanishes, small
/// enough that a batch of long command lines stays a few MiB.
pub const DEFAULT_BATCH_SIZE: usize = 1024;

/// Something the operator should know about, reported while the run goes on.
#[derive(Debug)]
pub enum Diagnostic<'a> {
    /// A record was rejected; the others are still evaluated.
    Rejected(&'a RecordError),
    /// A rule call failed; `events` events were not evaluated (or matches not summarized)
    /// by that rule.
    RuleFailed {
        /// The failure.
        error: &'a RuleError,
        /// How many events the failed call held.
        events: usize,
    },
    /// A rule failed too many calls in a row and runs no more in this run.
    Quarantined {
        /// The rule's summary so far.
        rule: &'a RuleSummary,
    },
}

/// What ended a run early.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// An input could not be opened.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A rule could not be instantiated.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A record was rejected under `--strict`.
    #[error("{0} (--strict)")]
    Strict(RecordError),
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Output(#[from] io::Error),
}

/// Counts of one run. `read = evaluated + skipped + rejected` always holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Records read.
    pub read: u64,
    /// Process events evaluated.
    pub evaluated: u64,
    /// Records of other kinds, by kind.
    pub skipped: BTreeMap<String, u64>,
    /// Records rejected, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Matches, all rules together.
    pub matches: u64,
    /// Alerts, all rules together.
    pub alerts: u64,
    /// Per rule, in load order.
    pub rules: Vec<RuleSummary>,
}

impl Summary {
    /// Records skipped, all kinds together.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Records rejected, all reasons together.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// The skipped kinds by count, largest first (ties by name).
    pub fn skipped_by_count(&self) -> Vec<(&str, u64)> {
        let mut kinds: Vec<(&str, u64)> = self.skipped.iter().map(|(k, &n)| (k.as_str(), n)).collect();
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        kinds
    }
}

/// Counts of one rule in one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleSummary {
    /// The rule id.
    pub id: String,
    /// The rule version.
    pub version: String,
    /// The artifact's digest.
    pub digest: String,
    /// Events evaluated by this rule.
    pub evaluated: u64,
    /// Matches.
    pub matches: u64,
    /// Alerts.
    pub alerts: u64,
    /// Failed calls.
    pub failures: u64,
    /// Events this rule did not evaluate: its call failed, or it was quarantined.
    pub failed_events: u64,
    /// Matches this rule did not summarize because its `summarize` call failed.
    pub unsummarized_matches: u64,
    /// The last failure, if any.
    pub last_failure: Option<String>,
    /// Why the rule was quarantined, if it was.
    pub quarantined: Option<String>,
}

/// One loaded rule during a run: its instance, its matches so far by window, and its
/// record of failures.
struct RuleRun {
    rule: Arc<CompiledRule>,
    /// Matched events by window, projected on the rule's summary reads. Rules that read the
    /// same fields (the rules of a Sigma pack) share one copy of an event they all matched.
    windows: HashMap<(i64, i64), Vec<Arc<ProcessEvent>>>,
    summary: RuleSummary,
    consecutive_failures: u32,
}

impl RuleRun {
    /// Records a failed call over `events` events and quarantines the rule after too
    /// many in a row.
    fn failed(&mut self, error: &RuleError, events: usize, diagnose: &mut dyn FnMut(Diagnostic<'_>)) {
        self.summary.failures += 1;
        self.summary.last_failure = Some(format!("{}: {}: {}", error.stage, error.kind, error.message));
        self.consecutive_failures += 1;
        // A pack's failure is the failure of each of its rules, reported once, by its first.
        if error.stage != "evaluate" || self.rule.member() == 0 {
            diagnose(Diagnostic::RuleFailed { error, events });
        }
        let limit = self.rule.limits().max_consecutive_failures;
        if self.consecutive_failures >= limit && self.summary.quarantined.is_none() {
            self.summary.quarantined =
                Some(format!("{limit} consecutive failures, the last: {}: {}", error.kind, error.message));
            diagnose(Diagnostic::Quarantined { rule: &self.summary });
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
    let mut runs = start_runs(rules);
    let mut instances = Instances::new(rules)?;
    // Open every input first: a missing file is an error before any output.
    let readers = inputs
        .iter()
        .map(|input| match is_defender_json_lines_file(input, options.input_format)? {
            true => Ok(None),
            false => input.open_counted(options.input_format, options.progress.clone()).map(Some),
        })
        .collect::<Result<Vec<_>, InputError>>()?;
    let mut evaluation = Evaluation::new(rules, &mut runs, &mut instances, options, output, diagnose);
    let mut second_passes = Vec::with_capacity(inputs.len());
    for reader in readers {
        second_passes.push(match reader {
            Some(reader) => first_pass(reader, &mut evaluation)?,
            None => SecondPass::Blocks,
        });
    }
    for (input, pass) in inputs.iter().zip(second_passes) {
        match pass {
            SecondPass::Nothing => {}
            SecondPass::Blocks => evaluation.blocks(input)?,
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
                for record in input.open(options.input_format)? {
                    evaluation.event_of_first_pass(record)?;
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
fn first_pass(mut reader: Reader, evaluation: &mut Evaluation<'_>) -> Result<SecondPass, EvalError> {
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
        evaluation.lineage.learn(&event);
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
            if kept_bytes <= evaluation.options.kept_event_bytes {
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
    let mut runs = start_runs(rules);
    let mut instances = Instances::new(rules)?;
    let mut evaluation = Evaluation::new(rules, &mut runs, &mut instances, options, output, diagnose);
    for record in records {
        evaluation.record(record)?;
    }
    evaluation.finish()
}

/// One run in progress: the counts, the batch being filled, the lineage table.
struct Evaluation<'a> {
    rules: &'a [Arc<CompiledRule>],
    runs: &'a mut Vec<RuleRun>,
    /// The instances of this thread: for one job, and for the summaries.
    instances: &'a mut Instances,
    options: &'a EvalOptions,
    output: &'a mut dyn Output,
    diagnose: &'a mut dyn FnMut(Diagnostic<'_>),
    lineage: Lineage,
    summary: Summary,
    time_range: Option<(i64, i64)>,
    batch: Vec<ProcessEvent>,
    /// Per rule, whether it is quarantined (shared with the workers).
    quarantined: Arc<[AtomicBool]>,
    /// With more than one job, the evaluation workers, started with the first batch (a
    /// file evaluated in blocks needs none).
    workers: Option<Workers>,
    /// Emptied batches, filled again: a batch is hundreds of KiB, and a fresh one each time
    /// costs the kernel zeroing fresh pages (a 2 MiB huge page per batch where the kernel
    /// backs large allocations with them).
    spare_batches: Vec<Vec<ProcessEvent>>,
}

impl<'a> Evaluation<'a> {
    fn new(
        rules: &'a [Arc<CompiledRule>],
        runs: &'a mut Vec<RuleRun>,
        instances: &'a mut Instances,
        options: &'a EvalOptions,
        output: &'a mut dyn Output,
        diagnose: &'a mut dyn FnMut(Diagnostic<'_>),
    ) -> Self {
        let quarantined: Arc<[AtomicBool]> = runs.iter().map(|_| AtomicBool::new(false)).collect();
        Self {
            rules,
            runs,
            instances,
            options,
            output,
            diagnose,
            lineage: Lineage::new(options.lineage_capacity),
            summary: Summary::default(),
            time_range: None,
            batch: Vec::with_capacity(options.batch_size),
            quarantined,
            workers: None,
            spare_batches: Vec::new(),
        }
    }

    /// Counts a record, and evaluates it if it is an event.
    fn record(&mut self, record: Record) -> Result<(), EvalError> {
        self.summary.read += 1;
        match record {
            Record::Event(mut event) => {
                self.lineage.resolve_and_record(&mut event);
                self.summary.evaluated += 1;
                let t = event.time_ms();
                self.time_range = Some(self.time_range.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
                self.batch.push(*event);
                if self.batch.len() == self.options.batch_size {
                    self.evaluate_batch()?;
                }
            }
            Record::Skipped(skipped) => *self.summary.skipped.entry(skipped.kind).or_default() += 1,
            Record::Rejected(error) => {
                if self.options.strict {
                    return Err(EvalError::Strict(error));
                }
                *self.summary.rejected.entry(error.reason.kind()).or_default() += 1;
                (self.diagnose)(Diagnostic::Rejected(&error));
            }
        }
        Ok(())
    }

    /// Reads and evaluates a file of Defender JSON lines in blocks, each block evaluated
    /// by the worker that parsed it with instances of its own (see [`evaluate_block`]),
    /// then taken in here in file order; `jobs` workers, none with one job.
    fn blocks(&mut self, input: &Input) -> Result<(), EvalError> {
        let batch_size = self.options.batch_size.max(1);
        let stages = (0..self.options.jobs.max(1))
            .map(|_| {
                let mut instances = Instances::new(self.rules)?;
                let quarantined = self.quarantined.clone();
                let mut batch = Vec::with_capacity(batch_size);
                let stage: Stage<Vec<BlockItem>> = Box::new(move |records| {
                    evaluate_block(&mut instances, &quarantined, batch_size, &mut batch, records)
                });
                Ok(stage)
            })
            .collect::<Result<Vec<_>, RuleError>>()?;
        for items in input.open_blocks(self.options.progress.clone(), stages)? {
            for item in items {
                match item {
                    BlockItem::Record(record) => self.record(record)?,
                    BlockItem::Evaluated(batch) => self.evaluated(batch)?,
                }
            }
        }
        Ok(())
    }

    /// Takes in a batch a worker evaluated: as [`Evaluation::record`] takes its events and
    /// [`Evaluation::evaluate_batch`] its outcomes.
    fn evaluated(&mut self, batch: EvaluatedBatch) -> Result<(), EvalError> {
        // What was batched here before is older: its matches come first.
        self.evaluate_batch()?;
        if let Some(workers) = &mut self.workers {
            for (batch, outcomes) in workers.wait_all() {
                self.apply(BatchEvents::All(&batch), outcomes)?;
            }
        }
        let count = batch.len as u64;
        self.summary.read += count;
        self.summary.evaluated += count;
        if let Some((lo, hi)) = batch.time_range {
            self.time_range = Some(self.time_range.map_or((lo, hi), |(l, h)| (l.min(lo), h.max(hi))));
        }
        self.apply(BatchEvents::Matched { len: batch.len, events: &batch.matched }, batch.outcomes)
    }

    /// A record read again in a second pass: the first counted every record, so only its
    /// events count now.
    fn event_of_first_pass(&mut self, record: Record) -> Result<(), EvalError> {
        match record {
            Record::Event(_) => self.record(record),
            _ => Ok(()),
        }
    }

    /// Evaluates the batch (or hands it to a worker) and takes in what is done.
    fn evaluate_batch(&mut self) -> Result<(), EvalError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let spare = self.spare_batches.pop().unwrap_or_else(|| Vec::with_capacity(self.options.batch_size));
        let batch = std::mem::replace(&mut self.batch, spare);
        if self.workers.is_none() && self.options.jobs > 1 {
            self.workers = Some(Workers::start(self.rules, self.options.jobs, &self.quarantined)?);
        }
        let done = match &mut self.workers {
            Some(workers) => workers.submit(batch),
            // One job: the runs' own instances evaluate, on this thread.
            None => {
                let outcomes = call_rules(self.instances, &self.quarantined, &batch);
                vec![(batch, outcomes)]
            }
        };
        for (mut batch, outcomes) in done {
            self.apply(BatchEvents::All(&batch), outcomes)?;
            batch.clear();
            self.spare_batches.push(batch);
        }
        Ok(())
    }

    fn apply(&mut self, batch: BatchEvents<'_>, outcomes: Vec<Outcome>) -> Result<(), EvalError> {
        apply_outcomes(
            self.runs,
            &self.quarantined,
            batch,
            outcomes,
            self.options,
            self.output,
            self.diagnose,
        )
    }

    /// Evaluates the last batch, summarizes every window and writes the alerts.
    fn finish(mut self) -> Result<Summary, EvalError> {
        self.evaluate_batch()?;
        if let Some(workers) = &mut self.workers {
            for (batch, outcomes) in workers.drain() {
                self.apply(BatchEvents::All(&batch), outcomes)?;
            }
        }
        if !self.options.matches_only {
            let alerts =
                summarize(self.runs, self.instances, self.options.window, self.time_range, self.diagnose);
            for alert in &alerts {
                self.output.alert(alert)?;
            }
        }
        self.output.finish()?;
        let mut summary = self.summary;
        summary.rules = self.runs.drain(..).map(|run| run.summary).collect();
        summary.matches = summary.rules.iter().map(|r| r.matches).sum();
        summary.alerts = summary.rules.iter().map(|r| r.alerts).sum();
        Ok(summary)
    }
}

/// An empty record for every rule.
fn start_runs(rules: &[Arc<CompiledRule>]) -> Vec<RuleRun> {
    rules
        .iter()
        .map(|rule| RuleRun {
            rule: rule.clone(),
            windows: HashMap::new(),
            summary: RuleSummary {
                id: rule.metadata().id.clone(),
                version: rule.metadata().version.clone(),
                digest: rule.digest().to_string(),
                ..RuleSummary::default()
            },
            consecutive_failures: 0,
        })
        .collect()
}

/// What one rule's call over one batch gave.
enum Outcome {
    /// The indices of the matching events.
    Matched(Vec<usize>),
    /// The call failed.
    Failed(RuleError),
    /// The rule is quarantined: not called.
    NotCalled,
}

/// Calls every pack with a rule that is not quarantined over `batch`, once.
fn call_rules(instances: &mut Instances, quarantined: &[AtomicBool], batch: &[ProcessEvent]) -> Vec<Outcome> {
    // A failed call loses this batch for this pack only: the other packs' results and the
    // next batch are not affected (the instance is already fresh).
    instances
        .evaluate(batch, |rule| quarantined[rule].load(Ordering::Relaxed))
        .into_iter()
        .map(|result| match result {
            None => Outcome::NotCalled,
            Some(Ok(indices)) => Outcome::Matched(indices),
            Some(Err(error)) => Outcome::Failed(error),
        })
        .collect()
}

/// Takes in the outcomes of one batch, in batch order: counts, failures and quarantine,
/// then writes or keeps the matches.
fn apply_outcomes(
    runs: &mut [RuleRun],
    quarantined: &[AtomicBool],
    batch: BatchEvents<'_>,
    outcomes: Vec<Outcome>,
    options: &EvalOptions,
    output: &mut dyn Output,
    diagnose: &mut dyn FnMut(Diagnostic<'_>),
) -> Result<(), EvalError> {
    let mut matched: Vec<Vec<usize>> = Vec::with_capacity(runs.len());
    for ((run, outcome), flag) in runs.iter_mut().zip(outcomes).zip(quarantined) {
        // A worker may have evaluated this batch before an earlier batch's failure
        // quarantined the rule: what counts is the rule's state in batch order, so the
        // result is the same whatever the number of workers.
        let indices = match outcome {
            _ if run.summary.quarantined.is_some() => {
                run.summary.failed_events += batch.len() as u64;
                Vec::new()
            }
            Outcome::Matched(indices) => {
                run.consecutive_failures = 0;
                run.summary.evaluated += batch.len() as u64;
                indices
            }
            Outcome::Failed(error) => {
                run.summary.failed_events += batch.len() as u64;
                run.failed(&error, batch.len(), diagnose);
                if run.summary.quarantined.is_some() {
                    flag.store(true, Ordering::Relaxed);
                }
                Vec::new()
            }
            // Only a quarantined rule is not called, and that is handled above.
            Outcome::NotCalled => {
                run.summary.failed_events += batch.len() as u64;
                Vec::new()
            }
        };
        run.summary.matches += indices.len() as u64;
        matched.push(indices);
    }
    if options.matches_only {
        // In input order, and for one event in rule order.
        let mut any: Vec<usize> = matched.iter().flatten().copied().collect();
        any.sort_unstable();
        any.dedup();
        let mut cursors = vec![0usize; runs.len()];
        for i in any {
            let event = batch.get(i);
            for (r, run) in runs.iter().enumerate() {
                if matched[r].get(cursors[r]) == Some(&i) {
                    cursors[r] += 1;
                    output.matched(&Match { rule: &run.rule, event })?;
                }
            }
        }
    } else {
        // One projection per event and set of fields, shared by every rule that needs it.
        let mut projections: HashMap<(usize, Vec<Field>), Arc<ProcessEvent>> = HashMap::new();
        for (run, indices) in runs.iter_mut().zip(&matched) {
            let fields = &run.rule.metadata().summary_reads;
            for &i in indices {
                let event = batch.get(i);
                let window = options.window.window_of(event.time_ms());
                let projected = projections
                    .entry((i, fields.clone()))
                    .or_insert_with(|| Arc::new(event.projected(fields)))
                    .clone();
                run.windows.entry(window).or_default().push(projected);
            }
        }
    }
    Ok(())
}

/// The events of one evaluated batch, for taking in its outcomes: all of them, or (from a
/// worker that evaluated the batch itself) only those some rule matched.
enum BatchEvents<'a> {
    All(&'a [ProcessEvent]),
    Matched {
        /// Events in the batch.
        len: usize,
        /// The matched events and their indices in the batch, ascending.
        events: &'a [(usize, ProcessEvent)],
    },
}

impl BatchEvents<'_> {
    fn len(&self) -> usize {
        match self {
            BatchEvents::All(events) => events.len(),
            BatchEvents::Matched { len, .. } => *len,
        }
    }

    /// The event at `index`, which a rule matched.
    fn get(&self, index: usize) -> &ProcessEvent {
        match self {
            BatchEvents::All(events) => &events[index],
            BatchEvents::Matched { events, .. } => {
                let at = events.binary_search_by_key(&index, |(i, _)| *i);
                &events[at.expect("a worker keeps every matched event")].1
            }
        }
    }
}

/// What a worker made of one block of lines: its records in order, where each batch of
/// events it evaluated stands at the place where the batch was full (or at the block's
/// end), as [`Evaluation::record`] would have evaluated it.
enum BlockItem {
    /// A record of another kind, a rejected one, or (in a block with lineage keys, which
    /// only the in-order table can resolve) an event not evaluated yet.
    Record(Record),
    /// A batch of events the worker evaluated.
    Evaluated(EvaluatedBatch),
}

/// A batch evaluated by the worker that parsed it.
struct EvaluatedBatch {
    len: usize,
    /// The earliest and latest event time, if any.
    time_range: Option<(i64, i64)>,
    outcomes: Vec<Outcome>,
    /// The events some rule matched, with their index in the batch; the others were freed
    /// where they were parsed.
    matched: Vec<(usize, ProcessEvent)>,
}

/// The worker's stage of [`Evaluation::blocks`]: evaluates the events of a block of lines
/// in batches of `batch_size` (the last one cut at the block's end) with the worker's own
/// instances. A block holding an event with lineage keys is left as it is: the lineage
/// table resolves those in input order.
fn evaluate_block(
    instances: &mut Instances,
    quarantined: &[AtomicBool],
    batch_size: usize,
    batch: &mut Vec<ProcessEvent>,
    records: Vec<Record>,
) -> Vec<BlockItem> {
    if records.iter().any(|r| matches!(r, Record::Event(e) if e.lineage().is_some())) {
        return records.into_iter().map(BlockItem::Record).collect();
    }
    let mut items = Vec::with_capacity(records.len() / batch_size + 1);
    for record in records {
        match record {
            Record::Event(event) => {
                batch.push(*event);
                if batch.len() == batch_size {
                    items.push(BlockItem::Evaluated(evaluate_events(instances, quarantined, batch)));
                }
            }
            other => items.push(BlockItem::Record(other)),
        }
    }
    if !batch.is_empty() {
        items.push(BlockItem::Evaluated(evaluate_events(instances, quarantined, batch)));
    }
    items
}

/// Calls the rules over `batch` and keeps only the events some rule matched; `batch` is
/// left empty, for the next.
fn evaluate_events(
    instances: &mut Instances,
    quarantined: &[AtomicBool],
    batch: &mut Vec<ProcessEvent>,
) -> EvaluatedBatch {
    let outcomes = call_rules(instances, quarantined, batch);
    let time_range = batch
        .iter()
        .map(ProcessEvent::time_ms)
        .fold(None, |range, t| Some(range.map_or((t, t), |(lo, hi): (i64, i64)| (lo.min(t), hi.max(t)))));
    let mut keep: Vec<usize> = outcomes
        .iter()
        .filter_map(|o| if let Outcome::Matched(indices) = o { Some(indices) } else { None })
        .flatten()
        .copied()
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let len = batch.len();
    // Taken out from the last: what `swap_remove` puts in a matched event's place is then
    // one that no rule matched, and the others are freed where they lie.
    let mut matched: Vec<(usize, ProcessEvent)> =
        keep.into_iter().rev().map(|i| (i, batch.swap_remove(i))).collect();
    matched.reverse();
    batch.clear();
    EvaluatedBatch { len, time_range, outcomes, matched }
}

/// Batches evaluated by worker threads, each with its own instance (its own Store) of
/// every rule; the outcomes are taken in in batch order. At most two batches per worker
/// are in flight.
struct Workers {
    work: Option<SyncSender<(u64, Vec<ProcessEvent>)>>,
    results: InOrder<(Vec<ProcessEvent>, Vec<Outcome>)>,
    sent: u64,
    in_flight_limit: u64,
}

impl Workers {
    fn start(
        rules: &[Arc<CompiledRule>],
        jobs: usize,
        quarantined: &Arc<[AtomicBool]>,
    ) -> Result<Self, RuleError> {
        let (work, queue) = std::sync::mpsc::sync_channel::<(u64, Vec<ProcessEvent>)>(jobs);
        let (results_tx, results) = std::sync::mpsc::channel();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for _ in 0..jobs {
            let mut instances = Instances::new(rules)?;
            let (queue, results_tx, quarantined) = (queue.clone(), results_tx.clone(), quarantined.clone());
            std::thread::Builder::new()
                .name("rulehost-eval".into())
                .spawn(move || {
                    while let Ok(Ok((seq, batch))) = queue.lock().map(|queue| queue.recv()) {
                        let outcomes = call_rules(&mut instances, &quarantined, &batch);
                        if results_tx.send((seq, (batch, outcomes))).is_err() {
                            return;
                        }
                    }
                })
                .expect("a thread can be started");
        }
        Ok(Self {
            work: Some(work),
            results: InOrder::new(results),
            sent: 0,
            in_flight_limit: 2 * jobs as u64,
        })
    }

    /// Hands `batch` to a worker, then returns the batches done in order, waiting for the
    /// oldest when too many are in flight.
    fn submit(&mut self, batch: Vec<ProcessEvent>) -> Vec<(Vec<ProcessEvent>, Vec<Outcome>)> {
        if let Some(work) = &self.work {
            // The workers live as long as `self.work`: sending fails only if one panicked.
            work.send((self.sent, batch)).expect("the evaluation workers are running");
            self.sent += 1;
        }
        let mut done = Vec::new();
        while self.sent - self.results.taken() >= self.in_flight_limit {
            done.push(self.next_blocking());
        }
        done.extend(std::iter::from_fn(|| self.results.next_ready()));
        done
    }

    /// Waits for every batch in flight and returns them in order; the workers stay.
    fn wait_all(&mut self) -> Vec<(Vec<ProcessEvent>, Vec<Outcome>)> {
        let mut done = Vec::new();
        while self.results.taken() < self.sent {
            done.push(self.next_blocking());
        }
        done
    }

    /// Waits for every batch in flight and returns them in order, and lets the workers end.
    fn drain(&mut self) -> Vec<(Vec<ProcessEvent>, Vec<Outcome>)> {
        self.work = None;
        self.wait_all()
    }

    fn next_blocking(&mut self) -> (Vec<ProcessEvent>, Vec<Outcome>) {
        self.results.next_blocking().expect("the evaluation workers are running")
    }
}

/// The `summarize` stage of one rule over the matched `events` of one window, and the
/// engine's columns (count, first and last time, report ids) of each alert. The events
/// are put in time order first.
pub(crate) fn summarize_window(
    instance: &mut RuleInstance,
    rule: &Arc<CompiledRule>,
    (start, end): (i64, i64),
    events: &mut [ProcessEvent],
) -> Result<Vec<Alert>, RuleError> {
    events.sort_by_key(ProcessEvent::time_ms);
    let rows = instance.summarize(rule.member(), (start, end), events)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let covered: Vec<&ProcessEvent> = row.events.iter().map(|&i| &events[i]).collect();
            let time_text = |e: Option<&&ProcessEvent>| {
                e.map_or_else(String::new, |e| e.get(Field::Timestamp).to_owned())
            };
            Alert {
                rule: rule.clone(),
                window_start_ms: start,
                window_end_ms: end,
                columns: row.columns,
                match_count: covered.len(),
                first_timestamp: time_text(covered.iter().min_by_key(|e| e.time_ms())),
                last_timestamp: time_text(covered.iter().max_by_key(|e| e.time_ms())),
                report_ids: covered.iter().map(|e| e.get(Field::ReportId).to_owned()).collect(),
            }
        })
        .collect())
}

/// Summarizes every rule's windows into alerts, ordered by window start, then rule load
/// order, then the rule's own order.
fn summarize(
    runs: &mut [RuleRun],
    instances: &mut Instances,
    window: WindowSpec,
    time_range: Option<(i64, i64)>,
    diagnose: &mut dyn FnMut(Diagnostic<'_>),
) -> Vec<Alert> {
    let mut alerts: Vec<(i64, usize, Alert)> = Vec::new();
    for (rule_index, run) in runs.iter_mut().enumerate() {
        let mut windows: Vec<_> = std::mem::take(&mut run.windows).into_iter().collect();
        windows.sort_by_key(|(w, _)| *w);
        for ((start, end), shared) in windows {
            // The last rule to summarize an event takes it; the others copy it, one window
            // at a time.
            let mut events: Vec<ProcessEvent> =
                shared.into_iter().map(|e| Arc::try_unwrap(e).unwrap_or_else(|e| (*e).clone())).collect();
            // `--window all` reports the input's own span, end exclusive.
            let (start, end) = match (window, time_range) {
                (WindowSpec::All, Some((lo, hi))) => (lo, hi.saturating_add(1)),
                _ => (start, end),
            };
            if run.summary.quarantined.is_some() {
                run.summary.unsummarized_matches += events.len() as u64;
                continue;
            }
            let (instance, _) = instances.of(rule_index);
            match summarize_window(instance, &run.rule, (start, end), &mut events) {
                Ok(window_alerts) => {
                    run.consecutive_failures = 0;
                    run.summary.alerts += window_alerts.len() as u64;
                    alerts.extend(window_alerts.into_iter().map(|alert| (start, rule_index, alert)));
                }
                Err(error) => {
                    run.summary.unsummarized_matches += events.len() as u64;
                    run.failed(&error, events.len(), diagnose);
                }
            }
        }
    }
    // Stable: rows of one rule and window keep the rule's order.
    alerts.sort_by_key(|(start, rule, _)| (*start, *rule));
    alerts.into_iter().map(|(_, _, alert)| alert).collect()
}
