//! The evaluation pipeline behind `eval` and `run`: records in, batches of process events
//! to every rule (on this thread, or on `jobs` workers each with its own instances),
//! matches kept in windows, alerts out to a sink.
//!
//! ```text
//! source ─ read and normalize (parallel) ─ lineage ─ batches ─ rule instances (parallel)
//!        ─ outcomes in batch order ─ windows ─ sink
//! ```
//!
//! `eval` runs it over bounded inputs and closes every window at the end; `run` runs it
//! over an unbounded stream, closes windows as the watermark passes them, evaluates partial
//! batches when they have waited long enough ([`Pipeline::tick`]) and swaps rules between
//! batches ([`Pipeline::update`]). Whatever the number of jobs, the outcomes are taken in in
//! batch order, so the output is the same.

mod block_workers;
mod rule_set;
mod windows;
mod workers;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use crate::alerts::{Match, WindowSpec};
use crate::events::{
    Field, HeldBytes, Input, InputError, Lineage, Origin, ProcessEvent, ProjectedEvent, Record, RecordError,
};
use crate::rules::watch::RuleUpdate;
use crate::runtime::{CompiledRule, RuleError};
use crate::sinks::Sink;
use block_workers::EvaluatedBatch;
use rule_set::{RuleRun, RuleSet};
use windows::{Closing, OpenWindow};
use workers::{Lost, Outcome, Workers, call_rules};

/// A matched event as the windows of every rule that matched it share it.
type Projection = Arc<ProjectedEvent>;

/// Events per rule call by default: large enough that the per-call cost vanishes, small
/// enough that a batch of long command lines stays a few MiB.
pub const DEFAULT_BATCH_SIZE: usize = 1024;

/// Bytes of event values a batch holds at most, whatever its count: a batch ends before an event
/// that would take it past this (an event this large is a batch of its own). Real events
/// are a few KiB, so batches end by their count; but 1,024 lines of 16 MiB each (the most a
/// line may hold) would have been 16 GiB held for one rule call.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// Whether a batch of `bytes` ends before an event of `event` bytes joins it.
pub(crate) fn ends_before(batch_len: usize, bytes: usize, event: usize) -> bool {
    batch_len > 0 && bytes.saturating_add(event) > MAX_BATCH_BYTES
}

/// When windows close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowClosing {
    /// All at the end (bounded inputs).
    AtEnd,
    /// When the watermark, the latest event time evaluated less `lateness_ms`, passes
    /// their end (a stream); the rest at the end.
    Watermark {
        /// How far behind the latest event time an event may come and still find its
        /// window open.
        lateness_ms: i64,
        /// How far ahead of this host's clock an event's time may be and still move the
        /// watermark. A time further ahead (a device whose clock is wrong, or a forged
        /// record) would close every open window at once and make every later event late;
        /// such an event is evaluated, counted as ahead, and its matches, in a window wholly
        /// past that bound, make an alert of their own.
        ahead_ms: i64,
    },
}

/// How the pipeline runs.
#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    /// How matches are grouped in time.
    pub window: WindowSpec,
    /// When windows close.
    pub closing: WindowClosing,
    /// Events per rule call, at most.
    pub batch_size: usize,
    /// The first rejected record ends the run with an error.
    pub strict: bool,
    /// Write every match instead of alerts.
    pub matches_only: bool,
    /// Processes the lineage table holds at most.
    pub lineage_capacity: usize,
    /// Threads that evaluate batches, each with its own instance of every rule (1: the
    /// calling thread evaluates). The output is the same whatever the number.
    pub jobs: usize,
    /// A device's matches of one rule that one window holds at most: once they reach it
    /// (when the batch that took them there is taken in), they are summarized at once, as a
    /// part of the window (`WindowPart` 1, 2, ... in their alerts), and the device's later
    /// matches in the window make the next part. Bounds the memory a window holds for one
    /// device, the time its summary takes, and the size of its alert. A window's matches are
    /// also summarized in calls of whole devices up to this many matches each.
    pub max_window_matches: usize,
    /// Bytes the matches held in open windows may take together: past it, the open windows
    /// that hold the most are summarized at once, each device's matches a part of its window
    /// (as for [`PipelineOptions::max_window_matches`]), until they hold three quarters of
    /// it. Bounds the memory of windows whatever their number of devices.
    pub max_window_bytes: usize,
}

/// [`PipelineOptions::max_window_bytes`] by default: above what the Sigma catalog's windows
/// hold over the bench's real inputs (about 100 MB over 5,000 EVTX files), within what a
/// sensor spares.
pub const DEFAULT_MAX_WINDOW_BYTES: usize = 256 << 20;

/// [`PipelineOptions::max_window_matches`] by default: a device matching one rule 10,000
/// times in one window is far past what an analyst reads in one alert, and its part holds
/// a few MB.
pub const DEFAULT_MAX_WINDOW_MATCHES: usize = 10_000;

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
        /// How many events the failed calls held.
        events: usize,
        /// Where the first event not evaluated was read (none for a `summarize` call).
        first: Option<&'a Origin>,
    },
    /// A rule failed too many calls in a row and is not called again (in a live run: until
    /// a new version of it is loaded).
    Quarantined {
        /// The rule's summary so far.
        rule: &'a RuleSummary,
        /// How many other rules of its pack are quarantined with it (a failed call of a pack
        /// is the failure of each of its rules): said once, of its first rule.
        with: usize,
    },
    /// An event came after its window had closed (a stream): it is evaluated, and its
    /// matches make an alert of their own. `count` is how many so far.
    Late {
        /// The event.
        event: &'a ProcessEvent,
        /// Late events so far, this one included.
        count: u64,
    },
    /// An event's time is further ahead of this host's clock than a stream allows (see
    /// [`WindowClosing::Watermark`]): it is evaluated, but does not move the watermark.
    /// `count` is how many so far.
    Ahead {
        /// The event.
        event: &'a ProcessEvent,
        /// Events ahead so far, this one included.
        count: u64,
    },
    /// The open windows held more than [`PipelineOptions::max_window_bytes`]: the window
    /// `window` of the rule `rule` (by id), which held the most, was summarized at once.
    /// `count` is how many windows so far.
    WindowCut {
        /// The rule's id.
        rule: &'a str,
        /// The window's span, milliseconds since the epoch.
        window: (i64, i64),
        /// The bytes the open windows held.
        held: usize,
        /// Windows cut so far, this one included.
        count: u64,
    },
}

/// What ended a run early.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
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
    /// Events that came after their window had closed (a stream only).
    pub late: u64,
    /// Events whose time was too far ahead of this host's clock to move the watermark (a
    /// stream only).
    pub ahead: u64,
    /// Windows summarized before they closed because the open windows held more than
    /// [`PipelineOptions::max_window_bytes`].
    pub windows_cut: u64,
    /// Matches, all rules together.
    pub matches: u64,
    /// Alerts, all rules together.
    pub alerts: u64,
    /// Per rule, in load order (then the rules unloaded during a live run).
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

/// Counts of one rule in one run (in a live run, of all its versions).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleSummary {
    /// The rule id.
    pub id: String,
    /// The rule version (the current one).
    pub version: String,
    /// The artifact's digest (the current one).
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
    /// Times a new version replaced the running one (a live run).
    pub swaps: u64,
}

/// One run of the pipeline in progress.
pub struct Pipeline<'a> {
    set: RuleSet,
    options: PipelineOptions,
    output: &'a mut dyn Sink,
    diagnose: &'a mut dyn FnMut(Diagnostic<'_>),
    lineage: Lineage,
    summary: Summary,
    /// The earliest and latest event time read.
    time_range: Option<(i64, i64)>,
    /// The latest event time read that is not ahead of the clock (see [`Pipeline::horizon`]):
    /// what tells an event read now late.
    latest_in_time: Option<i64>,
    /// The clock's horizon when it was last read (see [`Pipeline::is_ahead`]).
    horizon_read: i64,
    /// The latest event time of the batches taken in: the watermark is this less the
    /// lateness, so a window closes only once the batch that passed it is evaluated.
    evaluated_latest: Option<i64>,
    /// Event time as the source tracks it (see [`Pipeline::limit_event_time`]), if it does.
    source_time: Option<i64>,
    /// The highest watermark windows were closed at.
    closed_through: Option<i64>,
    batch: Vec<ProcessEvent>,
    /// The bytes of the batch's events (see [`MAX_BATCH_BYTES`]).
    batch_bytes: usize,
    /// With more than one job, the evaluation workers of the current rules, started with
    /// the first batch (a file evaluated in blocks needs none) and again after a swap.
    workers: Option<Workers>,
    /// The next place in the reading order (see [`ProcessEvent::read_order`]): every
    /// record takes one.
    next_read_order: u64,
    /// The first reading place of each batch handed out and not yet taken in, oldest first.
    unapplied: VecDeque<u64>,
    /// Emptied batches, filled again: a batch is hundreds of KiB, and a fresh one each time
    /// costs the kernel zeroing fresh pages (a 2 MiB huge page per batch where the kernel
    /// backs large allocations with them).
    spare_batches: Vec<Vec<ProcessEvent>>,
    /// Reading places the source took back (see [`Pipeline::withdraw`]) that events still
    /// to be taken in may hold, in order.
    withdrawn: Vec<Range<u64>>,
    /// The bytes the matches in open windows hold (see
    /// [`PipelineOptions::max_window_bytes`]).
    held: HeldBytes,
}

impl std::fmt::Debug for Pipeline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("rules", &self.set.runs.len())
            .field("options", &self.options)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl<'a> Pipeline<'a> {
    /// A pipeline over `rules`, loaded once.
    pub fn new(
        rules: &[Arc<CompiledRule>],
        options: PipelineOptions,
        output: &'a mut dyn Sink,
        diagnose: &'a mut dyn FnMut(Diagnostic<'_>),
    ) -> Result<Self, PipelineError> {
        let runs = rules.iter().map(|rule| RuleRun::new(rule.clone(), None)).collect();
        Self::start(runs, options, output, diagnose)
    }

    /// A pipeline over rules loaded from files, which [`Pipeline::update`] swaps by file:
    /// each file's rules (a component's one, a pack's many) in load order.
    pub fn with_rule_files(
        files: Vec<(PathBuf, Vec<Arc<CompiledRule>>)>,
        options: PipelineOptions,
        output: &'a mut dyn Sink,
        diagnose: &'a mut dyn FnMut(Diagnostic<'_>),
    ) -> Result<Self, PipelineError> {
        let runs = files
            .into_iter()
            .flat_map(|(path, rules)| {
                rules.into_iter().map(move |rule| RuleRun::new(rule, Some(path.clone())))
            })
            .collect();
        Self::start(runs, options, output, diagnose)
    }

    fn start(
        runs: Vec<RuleRun>,
        options: PipelineOptions,
        output: &'a mut dyn Sink,
        diagnose: &'a mut dyn FnMut(Diagnostic<'_>),
    ) -> Result<Self, PipelineError> {
        let options =
            PipelineOptions { batch_size: options.batch_size.max(1), jobs: options.jobs.max(1), ..options };
        Ok(Self {
            set: RuleSet::new(runs)?,
            options,
            output,
            diagnose,
            lineage: Lineage::new(options.lineage_capacity),
            summary: Summary::default(),
            time_range: None,
            latest_in_time: None,
            horizon_read: i64::MIN,
            evaluated_latest: None,
            source_time: None,
            closed_through: None,
            batch: Vec::with_capacity(options.batch_size),
            batch_bytes: 0,
            workers: None,
            next_read_order: 1,
            unapplied: VecDeque::new(),
            spare_batches: Vec::new(),
            withdrawn: Vec::new(),
            held: HeldBytes::default(),
        })
    }

    /// The lineage table, for a reading that learns process creations ahead of their
    /// evaluation (`eval`, which holds back children whose parent is still to come).
    pub fn lineage_mut(&mut self) -> &mut Lineage {
        &mut self.lineage
    }

    /// Counts a record; an event has its lineage resolved and is evaluated.
    pub fn record(&mut self, record: Record) -> Result<(), PipelineError> {
        match record {
            Record::Event(mut event) => {
                self.lineage.resolve_and_record(&mut event);
                self.event(*event)
            }
            Record::Skipped(skipped) => {
                self.next_read_order += 1;
                self.summary.read += 1;
                *self.summary.skipped.entry(skipped.kind).or_default() += 1;
                Ok(())
            }
            Record::Rejected(error) => {
                if self.options.strict {
                    return Err(PipelineError::Strict(error));
                }
                self.next_read_order += 1;
                self.summary.read += 1;
                *self.summary.rejected.entry(error.reason.kind()).or_default() += 1;
                (self.diagnose)(Diagnostic::Rejected(&error));
                Ok(())
            }
        }
    }

    /// The next place in the reading order, for an event read now and evaluated later
    /// (the pipeline gives one to each event that comes without).
    pub fn next_read_order(&mut self) -> u64 {
        self.next_read_order += 1;
        self.next_read_order - 1
    }

    /// Counts and evaluates an event whose lineage is resolved already.
    pub fn event(&mut self, mut event: ProcessEvent) -> Result<(), PipelineError> {
        if event.read_order() == 0 {
            event.set_read_order(self.next_read_order());
        }
        self.summary.read += 1;
        self.summary.evaluated += 1;
        let t = event.time_ms();
        // Late: its window has closed, or will have by the time its batch is taken in
        // (without the source's event time, the latest event read decides).
        let passed = match (self.source_time, self.latest_in_time) {
            (Some(_), _) => self.closed_through,
            (None, Some(latest)) => self.lateness().map(|lateness| latest.saturating_sub(lateness)),
            (None, None) => None,
        };
        if self.is_ahead(t) {
            self.summary.ahead += 1;
            (self.diagnose)(Diagnostic::Ahead { event: &event, count: self.summary.ahead });
        } else {
            self.latest_in_time = Some(self.latest_in_time.map_or(t, |l| l.max(t)));
        }
        if let Some(passed) = passed
            && self.options.window != WindowSpec::All
            && self.options.window.window_of(t).1 <= passed
        {
            self.summary.late += 1;
            (self.diagnose)(Diagnostic::Late { event: &event, count: self.summary.late });
        }
        self.time_range = Some(self.time_range.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
        let size = event.value_bytes();
        if ends_before(self.batch.len(), self.batch_bytes, size) {
            self.evaluate_batch()?;
        }
        self.batch_bytes += size;
        self.batch.push(event);
        if self.batch.len() == self.options.batch_size {
            self.evaluate_batch()?;
        }
        Ok(())
    }

    /// Evaluates the partial batch and waits for every batch in flight, so that what was
    /// read so far has its matches written, then flushes the sink: a stream calls it when
    /// a batch has waited long enough.
    pub fn tick(&mut self) -> Result<(), PipelineError> {
        self.evaluate_batch()?;
        self.wait_for_workers()?;
        self.output.flush()?;
        self.forget_withdrawn();
        Ok(())
    }

    /// Drops what the records at the reading places `ranges` led to and is not written
    /// yet: their matches in open windows now, and those of the ones not yet taken in when
    /// they are. Their source took them back (a revoked partition's, which the partition's
    /// new owner reads again): an alert made of them would be incomplete, and a duplicate.
    pub fn withdraw(&mut self, ranges: Vec<Range<u64>>) {
        if ranges.is_empty() {
            return;
        }
        let mut dropped = 0usize;
        for run in &mut self.set.runs {
            for window in run.windows.values_mut() {
                let before = window.events().count();
                window.retain(|e| !ranges.iter().any(|r| r.contains(&e.read_order())));
                dropped += before - window.events().count();
            }
            run.windows.retain(|_, window| !window.is_empty());
        }
        tracing::info!(
            matches = dropped,
            "records taken back by their source: their matches in open windows dropped"
        );
        self.withdrawn.extend(ranges);
        self.forget_withdrawn();
    }

    /// Forgets the withdrawn places that no event still to be taken in can hold.
    fn forget_withdrawn(&mut self) {
        let first = self.first_in_flight();
        self.withdrawn.retain(|r| r.end > first);
    }

    /// Applies one change of the rules, between two batches: the batches handed out are
    /// evaluated first, by the versions they were handed to; the partial batch will be
    /// evaluated by the new ones. A rule whose code changed summarizes its open windows
    /// before it goes; a rule the update names as unchanged keeps them. Counters follow a
    /// rule id from version to version.
    pub fn update(&mut self, update: RuleUpdate) -> Result<(), PipelineError> {
        self.wait_for_workers()?;
        match update {
            RuleUpdate::Loaded { path, rules, unchanged } => {
                // The candidate passed its checks in the watcher; it must also instantiate.
                if let Err(error) = rules[0].pack().instantiate() {
                    tracing::error!(path = %path.display(), "refused: {error}");
                    return Ok(());
                }
                let ids: Vec<&str> = rules.iter().map(|r| r.metadata().id.as_str()).collect();
                // A file that now holds another version replaces what it held; a rule id
                // that another file held moves here with its counters, whichever file it
                // came from.
                let source = match self.set.runs.iter().any(|r| r.source.as_ref() == Some(&path)) {
                    true => Some(path.clone()),
                    false => self
                        .set
                        .runs
                        .iter()
                        .find(|r| ids.contains(&r.summary.id.as_str()))
                        .and_then(|r| r.source.clone()),
                };
                let mut fresh: Vec<RuleRun> =
                    rules.iter().map(|rule| RuleRun::new(rule.clone(), Some(path.clone()))).collect();
                let old: Vec<usize> = match &source {
                    Some(source) => (0..self.set.runs.len())
                        .filter(|&i| self.set.runs[i].source.as_ref() == Some(source))
                        .collect(),
                    None => Vec::new(),
                };
                if old.is_empty() {
                    crate::rules::watch::log_loaded(&path, &rules);
                    let mut runs = std::mem::take(&mut self.set.runs);
                    runs.extend(fresh);
                    self.replace_rules(runs, Vec::new())?;
                    return Ok(());
                }
                let (mut changed, mut kept) = (0usize, 0usize);
                let mut retired = Vec::new();
                for &i in &old {
                    let successor = fresh.iter().position(|m| m.summary.id == self.set.runs[i].summary.id);
                    let same = successor.is_some()
                        && unchanged.contains(&self.set.runs[i].summary.id)
                        && !self.set.runs[i].is_quarantined();
                    if same {
                        fresh[successor.unwrap()].windows = std::mem::take(&mut self.set.runs[i].windows);
                        kept += 1;
                    } else {
                        // The old version summarizes what it matched before it goes.
                        self.close_windows(|r| r == i, None)?;
                        changed += 1;
                    }
                    let previous = std::mem::take(&mut self.set.runs[i].summary);
                    match successor {
                        Some(s) => {
                            let summary = &mut fresh[s].summary;
                            summary.evaluated = previous.evaluated;
                            summary.matches = previous.matches;
                            summary.alerts = previous.alerts;
                            summary.failures = previous.failures;
                            summary.failed_events = previous.failed_events;
                            summary.unsummarized_matches = previous.unsummarized_matches;
                            summary.last_failure = previous.last_failure;
                            summary.swaps = previous.swaps + u64::from(!same);
                        }
                        None => retired.push(previous),
                    }
                }
                let from: Vec<String> =
                    old.iter().map(|&i| self.set.runs[i].rule.metadata().version.clone()).collect();
                match (from.as_slice(), fresh.as_slice()) {
                    ([from], [to]) => {
                        tracing::info!(rule = %to.summary.id, from = %from, to = %to.summary.version, digest = %to.summary.digest, path = %path.display(), "rule swapped")
                    }
                    (_, new) => {
                        let added = new.len().saturating_sub(kept + changed);
                        tracing::info!(pack = %new[0].rule.artifact(), rules = new.len(), unchanged = kept, replaced = changed, added, digest = %new[0].summary.digest, path = %path.display(), "pack swapped")
                    }
                }
                // The new rules take the place of the old in the load order.
                let mut runs = Vec::with_capacity(self.set.runs.len() + fresh.len());
                let mut fresh = Some(fresh);
                for (i, run) in std::mem::take(&mut self.set.runs).into_iter().enumerate() {
                    if !old.contains(&i) {
                        runs.push(run);
                    } else if let Some(fresh) = fresh.take() {
                        runs.extend(fresh);
                    }
                }
                self.replace_rules(runs, retired)?;
            }
            RuleUpdate::Removed { path } => {
                let old: Vec<usize> = (0..self.set.runs.len())
                    .filter(|&i| self.set.runs[i].source.as_ref() == Some(&path))
                    .collect();
                if old.is_empty() {
                    return Ok(());
                }
                self.close_windows(|r| old.contains(&r), None)?;
                let what = match old.as_slice() {
                    [one] => {
                        let s = &self.set.runs[*one].summary;
                        format!("rule {} {}", s.id, s.version)
                    }
                    many => format!("pack {} ({} rules)", self.set.runs[many[0]].rule.artifact(), many.len()),
                };
                tracing::info!(what = %what, path = %path.display(), "unloaded: its file was removed");
                let (gone, runs): (Vec<_>, Vec<_>) = std::mem::take(&mut self.set.runs)
                    .into_iter()
                    .partition(|r| r.source.as_ref() == Some(&path));
                self.replace_rules(runs, gone.into_iter().map(|r| r.summary).collect())?;
            }
            RuleUpdate::Refused { path, reason } => {
                tracing::error!(path = %path.display(), "candidate refused, the running version stays: {reason}");
            }
            RuleUpdate::LeftOut { path, reason } => {
                tracing::warn!(path = %path.display(), "left out: {reason}");
            }
        }
        self.output.flush()?;
        Ok(())
    }

    /// Every rule's counts so far: loaded ones in load order, then unloaded ones.
    pub fn rule_summaries(&self) -> Vec<RuleSummary> {
        self.set.runs.iter().map(|r| r.summary.clone()).chain(self.set.retired.iter().cloned()).collect()
    }

    /// How many records, from the first in reading order, are settled: evaluated, and
    /// their matches written or their windows closed and written. What is settled is
    /// written once the sink flushes ([`Pipeline::tick`] does); a source can then let go of
    /// it (commit its offsets).
    pub fn settled(&self) -> u64 {
        let windowed = self
            .set
            .runs
            .iter()
            .flat_map(|r| r.windows.values().flat_map(|w| w.events().map(|e| e.read_order())));
        windowed.fold(self.first_in_flight(), u64::min) - 1
    }

    /// Evaluates the last batch, closes every window, writes the alerts and finishes the
    /// sink.
    pub fn finish(mut self) -> Result<Summary, PipelineError> {
        self.evaluate_batch()?;
        self.wait_for_workers()?;
        self.workers = None;
        let span = self.input_span();
        self.close_windows_as(|_| true, Closing { watermark: None, ahead_from: None, span })?;
        self.output.finish()?;
        let mut summary = std::mem::take(&mut self.summary);
        summary.rules = self.rule_summaries();
        summary.matches = summary.rules.iter().map(|r| r.matches).sum();
        summary.alerts = summary.rules.iter().map(|r| r.alerts).sum();
        Ok(summary)
    }

    fn replace_rules(&mut self, runs: Vec<RuleRun>, retired: Vec<RuleSummary>) -> Result<(), PipelineError> {
        self.set.replace(runs, retired)?;
        // The workers hold instances of the old rules: new ones start with the next batch.
        self.workers = None;
        Ok(())
    }

    /// Closes the windows of the rules `which` selects that end at or before `watermark`
    /// (`None`: all), and writes their alerts.
    fn close_windows(
        &mut self,
        which: impl Fn(usize) -> bool,
        watermark: Option<i64>,
    ) -> Result<(), PipelineError> {
        self.close_windows_as(which, Closing { watermark, ahead_from: None, span: None })
    }

    fn close_windows_as(
        &mut self,
        which: impl Fn(usize) -> bool,
        closing: Closing,
    ) -> Result<(), PipelineError> {
        if self.options.matches_only {
            return Ok(());
        }
        let (call_matches, jobs) = (self.options.max_window_matches, self.options.jobs);
        let output = &mut *self.output;
        windows::close(&mut self.set, which, closing, call_matches, jobs, self.diagnose, &mut |alert| {
            output.alert(alert)
        })?;
        Ok(())
    }

    /// Evaluates the batch (or hands it to a worker) and takes in what is done.
    fn evaluate_batch(&mut self) -> Result<(), PipelineError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        let spare = self.spare_batches.pop().unwrap_or_else(|| Vec::with_capacity(self.options.batch_size));
        let batch = std::mem::replace(&mut self.batch, spare);
        self.unapplied.push_back(batch[0].read_order());
        if self.workers.is_none() && self.options.jobs > 1 {
            self.workers = Some(Workers::start(&self.set.rules(), self.options.jobs, &self.set.quarantined)?);
        }
        let done = match &mut self.workers {
            Some(workers) => workers.submit(batch),
            // One job: this thread's instances evaluate.
            None => {
                let outcomes = call_rules(&mut self.set.instances, &self.set.quarantined, &batch);
                vec![(batch, outcomes)]
            }
        };
        self.take_in(done)
    }

    fn wait_for_workers(&mut self) -> Result<(), PipelineError> {
        let done = match &mut self.workers {
            Some(workers) => workers.wait_all(),
            None => return Ok(()),
        };
        self.take_in(done)
    }

    fn take_in(&mut self, done: Vec<workers::Done>) -> Result<(), PipelineError> {
        for (mut batch, outcomes) in done {
            self.unapplied.pop_front();
            // Only a stream closes windows as it goes, by the batches' latest times (those
            // not ahead of the clock).
            let closing = matches!(self.options.closing, WindowClosing::Watermark { .. });
            let latest = match closing {
                true => batch.iter().map(ProcessEvent::time_ms).filter(|&t| !self.is_ahead(t)).max(),
                false => None,
            };
            self.apply(BatchEvents::All(&batch), outcomes, latest)?;
            batch.clear();
            self.spare_batches.push(batch);
        }
        Ok(())
    }

    /// Takes in a batch a worker that parsed it evaluated: as [`Pipeline::event`] takes its
    /// events and [`Pipeline::evaluate_batch`] its outcomes.
    fn evaluated(&mut self, batch: EvaluatedBatch) -> Result<(), PipelineError> {
        // What was batched here before is older: its matches come first.
        self.evaluate_batch()?;
        self.wait_for_workers()?;
        let count = batch.len as u64;
        let first = self.next_read_order;
        self.next_read_order += count;
        let mut batch = batch;
        for (i, event) in &mut batch.matched {
            event.set_read_order(first + *i as u64);
        }
        self.summary.read += count;
        self.summary.evaluated += count;
        if let Some((lo, hi)) = batch.time_range {
            self.time_range = Some(self.time_range.map_or((lo, hi), |(l, h)| (l.min(lo), h.max(hi))));
        }
        // A batch that reached past the clock's horizon does not say how far it came short
        // of it: it moves no watermark.
        let closing = matches!(self.options.closing, WindowClosing::Watermark { .. });
        let latest = batch.time_range.map(|(_, hi)| hi).filter(|&hi| closing && !self.is_ahead(hi));
        self.apply(BatchEvents::Matched { len: batch.len, events: &batch.matched }, batch.outcomes, latest)
    }

    /// Evaluates a file of Defender JSON lines in blocks, each block by the worker that
    /// read and parsed it (see [`block_workers`]), taken in here in file order.
    pub fn evaluate_blocks(
        &mut self,
        input: &Input,
        progress: Option<Arc<std::sync::atomic::AtomicU64>>,
    ) -> Result<(), PipelineError> {
        let stages = block_workers::stages(&self.set.rules(), &self.set.quarantined, self.options)?;
        for items in input.open_blocks(progress, stages)? {
            for item in items {
                match item {
                    block_workers::BlockItem::Record(record) => self.record(record)?,
                    block_workers::BlockItem::Evaluated(batch) => self.evaluated(batch)?,
                }
            }
        }
        Ok(())
    }

    /// Takes in the outcomes of one batch, in batch order: counts, failures and
    /// quarantine, then writes or keeps the matches; in a stream, then closes the windows
    /// the batch's latest event passed.
    fn apply(
        &mut self,
        batch: BatchEvents<'_>,
        outcomes: Vec<Outcome>,
        latest: Option<i64>,
    ) -> Result<(), PipelineError> {
        let runs = &mut self.set.runs;
        let mut matched: Vec<Vec<usize>> = Vec::with_capacity(runs.len());
        for (r, (run, outcome)) in runs.iter_mut().zip(outcomes).enumerate() {
            // A worker may have evaluated this batch before an earlier batch's failure
            // quarantined the rule: what counts is the rule's state in batch order, so the
            // result is the same whatever the number of workers.
            let indices = match outcome {
                _ if run.is_quarantined() => {
                    run.summary.failed_events += batch.len() as u64;
                    Vec::new()
                }
                Outcome::Called { matched, lost: None } => {
                    run.succeeded();
                    run.summary.evaluated += batch.len() as u64;
                    matched
                }
                // The events beside those it failed on were evaluated, and their matches
                // count; the failure counts toward quarantine all the same.
                Outcome::Called { matched, lost: Some(lost) } => {
                    let Lost { failure, first } = lost;
                    run.summary.failed_events += failure.events as u64;
                    run.summary.evaluated += (batch.len() - failure.events) as u64;
                    let flag = &self.set.quarantined[r];
                    run.failed(&failure.error, failure.events, Some(&first), flag, self.diagnose);
                    matched
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
        if !self.withdrawn.is_empty() {
            // Made, and counted; not written, nor kept in a window.
            let withdrawn = &self.withdrawn;
            for indices in &mut matched {
                indices.retain(|&i| !withdrawn.iter().any(|r| r.contains(&batch.get(i).read_order())));
            }
        }
        if self.options.matches_only {
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
                        self.output.matched(&Match { rule: &run.rule, event })?;
                    }
                }
            }
            return Ok(());
        }
        // One projection per event and set of fields, shared by every rule that needs it: for
        // each set of fields, a place per event of the batch (a pack's rules share one set).
        let mut projections: Vec<(&[Field], Vec<Option<Projection>>)> = Vec::new();
        // The windows a device's matches filled: (rule, window, device).
        let mut filled: Vec<(usize, (i64, i64), u64)> = Vec::new();
        let cap = self.options.max_window_matches.max(1);
        // A window that ends by then has closed: one opened now is of late events.
        let closed_through = self.closed_through;
        for (r, (run, indices)) in runs.iter_mut().zip(&matched).enumerate() {
            if indices.is_empty() {
                continue;
            }
            let fields = run.rule.metadata().summary_reads.as_slice();
            let set = projections.iter().position(|&(known, _)| known == fields).unwrap_or_else(|| {
                projections.push((fields, vec![None; batch.len()]));
                projections.len() - 1
            });
            let of_set = &mut projections[set].1;
            for &i in indices {
                let event = batch.get(i);
                let window = self.options.window.window_of(event.time_ms());
                let projected = of_set[i]
                    .get_or_insert_with(|| Arc::new(ProjectedEvent::of(event, fields).counted_in(&self.held)))
                    .clone();
                let open = run.windows.entry(window).or_insert_with(|| {
                    OpenWindow::opened(closed_through.is_some_and(|closed| window.1 <= closed))
                });
                if let Some(device) = open.hold(projected, cap) {
                    filled.push((r, window, device));
                }
            }
        }
        drop(projections);
        for (rule, window, device) in filled {
            self.close_parts(rule, window, Some(device))?;
        }
        self.keep_windows_within_budget()?;
        if let Some(latest) = latest {
            self.evaluated_latest = Some(self.evaluated_latest.map_or(latest, |l| l.max(latest)));
            self.close_due()?;
        }
        Ok(())
    }

    /// With `--window all`, the span a window reports: the input's own so far, end exclusive.
    fn input_span(&self) -> Option<(i64, i64)> {
        match self.options.window {
            WindowSpec::All => self.time_range.map(|(lo, hi)| (lo, hi.saturating_add(1))),
            WindowSpec::Every(_) => None,
        }
    }

    /// Summarizes the matches of `device` (`None`: of every device) in `window` of the rule
    /// at `rule` as the window's next part for each, and writes the alerts.
    fn close_parts(
        &mut self,
        rule: usize,
        window: (i64, i64),
        device: Option<u64>,
    ) -> Result<(), PipelineError> {
        let span = self.input_span().unwrap_or(window);
        let due =
            windows::parts_due(&mut self.set, rule, window, device, span, self.options.max_window_matches);
        let output = &mut *self.output;
        windows::summarize(&mut self.set, due, self.options.jobs, self.diagnose, &mut |alert| {
            output.alert(alert)
        })?;
        Ok(())
    }

    /// Past [`PipelineOptions::max_window_bytes`], summarizes the open windows that hold the
    /// most at once, each device's matches a part, until they hold three quarters of it.
    fn keep_windows_within_budget(&mut self) -> Result<(), PipelineError> {
        let budget = self.options.max_window_bytes;
        if self.held.get() <= budget {
            return Ok(());
        }
        let enough = budget / 4 * 3;
        // The largest first, ties to the first rule and window, so that the output is the
        // same whatever the number of jobs. Summarizing one window leaves the others' sizes
        // as they were: one ordering serves.
        let mut by_size: Vec<(usize, usize, (i64, i64))> = self
            .set
            .runs
            .iter()
            .enumerate()
            .flat_map(|(r, run)| run.windows.iter().map(move |(&span, w)| (w.bytes(), r, span)))
            .filter(|&(bytes, ..)| bytes > 0)
            .collect();
        by_size.sort_by_key(|&(bytes, r, span)| (std::cmp::Reverse(bytes), r, span));
        for (_, rule, window) in by_size {
            let held = self.held.get();
            if held <= enough {
                break;
            }
            self.summary.windows_cut += 1;
            let count = self.summary.windows_cut;
            let id = self.set.runs[rule].summary.id.clone();
            (self.diagnose)(Diagnostic::WindowCut { rule: &id, window, held, count });
            self.close_parts(rule, window, None)?;
        }
        Ok(())
    }

    /// The allowed lateness, when windows close with the watermark.
    fn lateness(&self) -> Option<i64> {
        match self.options.closing {
            WindowClosing::Watermark { lateness_ms, .. } => Some(lateness_ms),
            WindowClosing::AtEnd => None,
        }
    }

    /// When windows close with the watermark, the latest event time that may move it: this
    /// host's clock now, and the time an event may be ahead of it.
    fn horizon(&mut self) -> Option<i64> {
        let WindowClosing::Watermark { ahead_ms, .. } = self.options.closing else { return None };
        self.horizon_read = now_ms().saturating_add(ahead_ms);
        Some(self.horizon_read)
    }

    /// Whether event time `t` is past the [`Pipeline::horizon`]. The clock is read only for a
    /// time past the horizon read last: the horizon only moves on, so an earlier time is
    /// within it, and an event of a live stream costs no reading of the clock.
    fn is_ahead(&mut self, t: i64) -> bool {
        t > self.horizon_read && self.horizon().is_some_and(|horizon| t > horizon)
    }

    /// Closes the windows the watermark has passed: event time (the latest evaluated, or
    /// the source's where it is behind) less the allowed lateness. Whether any closed.
    fn close_due(&mut self) -> Result<bool, PipelineError> {
        let Some(lateness) = self.lateness().filter(|_| self.options.window != WindowSpec::All) else {
            return Ok(false);
        };
        let Some(latest) = self.evaluated_latest else { return Ok(false) };
        let watermark = latest.min(self.source_time.unwrap_or(i64::MAX)).saturating_sub(lateness);
        // Closing at the same watermark again still closes the windows that late events
        // opened since.
        let watermark = self.closed_through.map_or(watermark, |w| w.max(watermark));
        self.closed_through = Some(watermark);
        let open = |set: &RuleSet| set.runs.iter().map(|r| r.windows.len()).sum::<usize>();
        let before = open(&self.set);
        // Windows wholly ahead of the clock close too: the watermark would not reach them
        // before the clock does, and their matches would be held until then.
        let ahead_from = self.horizon();
        self.close_windows_as(|_| true, Closing { watermark: Some(watermark), ahead_from, span: None })?;
        Ok(open(&self.set) < before)
    }

    /// Event time as the source tracks it, for the records taken in so far (see
    /// [`crate::sources::Source::event_time`]): windows close once both it and the latest
    /// event time evaluated, less the allowed lateness, have passed them. Closes what is
    /// due now (a partition gone idle moves event time with no new record); whether
    /// anything closed.
    pub fn limit_event_time(&mut self, time: Option<i64>) -> Result<bool, PipelineError> {
        // Unchanged, it closes nothing that taking in the last batch did not close.
        if time == self.source_time {
            return Ok(false);
        }
        self.source_time = time;
        self.close_due()
    }

    /// Records taken in so far: from the first in reading order, evaluated and their
    /// outcomes applied.
    pub fn records_taken_in(&self) -> u64 {
        self.first_in_flight() - 1
    }

    /// The reading place of the first record not yet taken in.
    fn first_in_flight(&self) -> u64 {
        self.unapplied
            .front()
            .copied()
            .or_else(|| self.batch.first().map(ProcessEvent::read_order))
            .unwrap_or(self.next_read_order)
    }
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

/// This host's clock, in milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
