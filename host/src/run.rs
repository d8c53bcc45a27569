//! `run`: a long-running evaluator. Events stream in (stdin, a pipe, a followed file);
//! batches go to every loaded rule; alerts are written when their event-time window
//! closes; rules are swapped, added and removed between two batches without stopping.
//!
//! Guarantees:
//! - every event is evaluated once by exactly one version of each loaded rule: updates are
//!   applied only between batches, and a batch is evaluated by the versions loaded when it
//!   is;
//! - every match and alert names the rule id, version and digest that produced it;
//! - a window that straddles a swap gives two alerts: the old version summarizes the
//!   matches it made when it is swapped out (its open windows are flushed then), and the
//!   new version summarizes its own when the window closes;
//! - windows close when the watermark (the latest event time seen, less the allowed
//!   lateness) passes their end. An event for a window that has closed already is late: it
//!   is still evaluated, counted, reported, and its matches make an alert of their own;
//! - at the end of the input, or on SIGINT / SIGTERM, every open window is flushed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use crate::alerts::{Match, Output, WindowSpec};
use crate::eval::summarize_window;
use crate::events::{Input, InputError, InputFormat, Lineage, ProcessEvent, Record, lineage};
use crate::rules::watch::RuleUpdate;
use crate::runtime::{CompiledRule, RuleError, RuleInstance};

/// How a live run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How matches are grouped in time.
    pub window: WindowSpec,
    /// How far behind the latest event time an event may arrive and still find its window
    /// open.
    pub allowed_lateness: Duration,
    /// Events per rule call at most.
    pub batch_size: usize,
    /// How long a partial batch waits for more events before it is evaluated anyway, so
    /// that a slow stream still gets its matches promptly.
    pub max_batch_delay: Duration,
    /// Write every match instead of alerts.
    pub matches_only: bool,
    /// The input format.
    pub input_format: InputFormat,
    /// How often to report the counters (`None`: only at the end).
    pub stats_interval: Option<Duration>,
    /// Processes the lineage table holds at most.
    pub lineage_capacity: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            window: WindowSpec::Every(3_600_000),
            allowed_lateness: Duration::from_secs(60),
            batch_size: crate::eval::DEFAULT_BATCH_SIZE,
            max_batch_delay: Duration::from_millis(100),
            matches_only: false,
            input_format: InputFormat::Jsonl,
            stats_interval: None,
            lineage_capacity: lineage::DEFAULT_CAPACITY,
        }
    }
}

/// Counters of one rule in a run (of its current version, with swaps counted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleStats {
    /// Rule id.
    pub id: String,
    /// Current version.
    pub version: String,
    /// Current artifact digest.
    pub digest: String,
    /// Events evaluated (all versions).
    pub events: u64,
    /// Matches (all versions).
    pub matches: u64,
    /// Alerts (all versions).
    pub alerts: u64,
    /// Failed calls (all versions).
    pub failures: u64,
    /// Times a new version replaced the running one.
    pub swaps: u64,
}

/// Counters of the whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Records read.
    pub read: u64,
    /// Events evaluated.
    pub evaluated: u64,
    /// Records skipped.
    pub skipped: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Events that arrived after their window had closed.
    pub late: u64,
    /// Per rule, loaded or unloaded during the run.
    pub rules: Vec<RuleStats>,
}

/// What ended a run early: the same as for `eval`.
pub use crate::eval::EvalError as RunError;

/// One loaded rule.
struct Slot {
    path: PathBuf,
    rule: Arc<CompiledRule>,
    /// An instance of the rule's pack (a pack of one: `run` takes no larger pack yet).
    instance: RuleInstance,
    windows: BTreeMap<(i64, i64), Vec<ProcessEvent>>,
    stats: RuleStats,
    consecutive_failures: u32,
    quarantined: bool,
}

impl Slot {
    fn new(path: PathBuf, rule: &Arc<CompiledRule>) -> Result<Self, RuleError> {
        let m = rule.metadata();
        Ok(Self {
            path,
            rule: rule.clone(),
            instance: rule.pack().instantiate()?,
            windows: BTreeMap::new(),
            stats: RuleStats {
                id: m.id.clone(),
                version: m.version.clone(),
                digest: rule.digest().to_string(),
                ..RuleStats::default()
            },
            consecutive_failures: 0,
            quarantined: false,
        })
    }

    fn failed(&mut self, error: &RuleError) {
        self.stats.failures += 1;
        self.consecutive_failures += 1;
        tracing::warn!(rule = %self.stats.id, version = %self.stats.version, digest = %self.stats.digest, stage = error.stage, kind = %error.kind, "rule call failed: {}", error.message);
        let limit = self.rule.limits().max_consecutive_failures;
        if self.consecutive_failures >= limit && !self.quarantined {
            self.quarantined = true;
            tracing::error!(rule = %self.stats.id, version = %self.stats.version, digest = %self.stats.digest, "rule quarantined after {limit} consecutive failures; it runs again when a new version is loaded");
        }
    }

    /// Summarizes the windows that end at or before `watermark` (all, with `None`).
    fn close_windows(&mut self, watermark: Option<i64>, output: &mut dyn Output) -> std::io::Result<()> {
        let closing: Vec<(i64, i64)> =
            self.windows.keys().filter(|(_, end)| watermark.is_none_or(|w| *end <= w)).copied().collect();
        for window in closing {
            let mut events = self.windows.remove(&window).expect("listed above");
            if self.quarantined {
                continue;
            }
            match summarize_window(&mut self.instance, &self.rule, window, &mut events) {
                Ok(alerts) => {
                    self.consecutive_failures = 0;
                    self.stats.alerts += alerts.len() as u64;
                    for alert in &alerts {
                        output.alert(alert)?;
                    }
                }
                Err(error) => self.failed(&error),
            }
        }
        Ok(())
    }
}

/// What the reader thread sends.
enum Incoming {
    Record(Record),
    Failed(InputError),
    End,
}

/// Runs until the input ends or `stop` is set. `rules` are the rules loaded at start, by
/// file; `updates` brings new versions, additions and removals. `stats` is called every
/// `stats_interval` and once at the end (with `true`).
pub fn run(
    rules: Vec<(PathBuf, Arc<CompiledRule>)>,
    input: Input,
    updates: Receiver<RuleUpdate>,
    stop: Arc<AtomicBool>,
    options: &RunOptions,
    output: &mut dyn Output,
    stats: &mut dyn FnMut(&[RuleStats], bool),
) -> Result<RunSummary, RunError> {
    let mut slots =
        rules.iter().map(|(path, rule)| Slot::new(path.clone(), rule)).collect::<Result<Vec<_>, _>>()?;
    let mut retired: Vec<RuleStats> = Vec::new();
    let (sender, incoming) = sync_channel::<Incoming>(options.batch_size.max(1) * 4);
    let format = options.input_format;
    std::thread::Builder::new().name("rulehost-input".into()).spawn(move || match input.open(format) {
        Ok(reader) => {
            for record in reader {
                if sender.send(Incoming::Record(record)).is_err() {
                    return;
                }
            }
            let _ = sender.send(Incoming::End);
        }
        Err(error) => {
            let _ = sender.send(Incoming::Failed(error));
        }
    })?;

    let lateness = options.allowed_lateness.as_millis() as i64;
    let mut summary = RunSummary::default();
    let mut lineage = Lineage::new(options.lineage_capacity);
    let mut batch: Vec<ProcessEvent> = Vec::with_capacity(options.batch_size);
    let mut batch_started = Instant::now();
    let mut latest: Option<i64> = None;
    let mut next_stats = options.stats_interval.map(|i| Instant::now() + i);
    let mut input_done = false;
    while !input_done && !stop.load(Ordering::Relaxed) {
        let wait = if batch.is_empty() {
            Duration::from_millis(50)
        } else {
            options.max_batch_delay.saturating_sub(batch_started.elapsed()).max(Duration::from_millis(1))
        };
        match incoming.recv_timeout(wait) {
            Ok(Incoming::Record(record)) => {
                if batch.is_empty() {
                    batch_started = Instant::now();
                }
                take(record, &mut summary, &mut lineage, &mut batch, &mut latest, options);
            }
            Ok(Incoming::Failed(error)) => return Err(error.into()),
            Ok(Incoming::End) | Err(RecvTimeoutError::Disconnected) => input_done = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let due = batch.len() >= options.batch_size
            || (!batch.is_empty() && batch_started.elapsed() >= options.max_batch_delay)
            || input_done;
        if due && !batch.is_empty() {
            evaluate_batch(&mut slots, &mut batch, options, output)?;
            if options.window != WindowSpec::All {
                let watermark = latest.map(|l| l - lateness);
                for slot in &mut slots {
                    slot.close_windows(watermark, output)?;
                }
            }
            output.flush()?;
        }
        // Between batches: the only place a rule changes.
        while let Ok(update) = updates.try_recv() {
            apply(update, &mut slots, &mut retired, output)?;
        }
        if let Some(at) = next_stats
            && Instant::now() >= at
        {
            stats(&all_stats(&slots, &retired), false);
            next_stats = options.stats_interval.map(|i| Instant::now() + i);
        }
    }
    // Stopped by a signal: the records already read are still evaluated.
    while let Ok(Incoming::Record(record)) = incoming.try_recv() {
        take(record, &mut summary, &mut lineage, &mut batch, &mut latest, options);
        if batch.len() >= options.batch_size {
            evaluate_batch(&mut slots, &mut batch, options, output)?;
        }
    }
    if !batch.is_empty() {
        evaluate_batch(&mut slots, &mut batch, options, output)?;
    }
    for slot in &mut slots {
        slot.close_windows(None, output)?;
    }
    output.finish()?;
    summary.rules = all_stats(&slots, &retired);
    stats(&summary.rules, true);
    Ok(summary)
}

/// Counts one record and, for an event, resolves its lineage, notes whether it is late,
/// and adds it to the batch.
fn take(
    record: Record,
    summary: &mut RunSummary,
    lineage: &mut Lineage,
    batch: &mut Vec<ProcessEvent>,
    latest: &mut Option<i64>,
    options: &RunOptions,
) {
    summary.read += 1;
    match record {
        Record::Event(mut event) => {
            lineage.resolve_and_record(&mut event);
            summary.evaluated += 1;
            let t = event.time_ms();
            let watermark = latest.map(|l| l - options.allowed_lateness.as_millis() as i64);
            if options.window != WindowSpec::All
                && watermark.is_some_and(|w| options.window.window_of(t).1 <= w)
            {
                summary.late += 1;
                if summary.late <= 10 {
                    tracing::warn!(origin = %event.origin(), timestamp = event.get(crate::events::Field::Timestamp), "late event: its window has closed; evaluated, and its matches make an alert of their own");
                }
            }
            *latest = Some(latest.map_or(t, |l| l.max(t)));
            batch.push(*event);
        }
        Record::Skipped(_) => summary.skipped += 1,
        Record::Rejected(error) => {
            summary.rejected += 1;
            tracing::warn!(origin = %error.origin, "record rejected: {}", error.reason);
        }
    }
}

fn all_stats(slots: &[Slot], retired: &[RuleStats]) -> Vec<RuleStats> {
    slots.iter().map(|s| s.stats.clone()).chain(retired.iter().cloned()).collect()
}

fn evaluate_batch(
    slots: &mut [Slot],
    batch: &mut Vec<ProcessEvent>,
    options: &RunOptions,
    output: &mut dyn Output,
) -> std::io::Result<()> {
    let mut matched: Vec<Vec<usize>> = Vec::with_capacity(slots.len());
    for slot in slots.iter_mut() {
        if slot.quarantined {
            matched.push(Vec::new());
            continue;
        }
        match slot
            .instance
            .evaluate(batch)
            .map(|mut per_rule| std::mem::take(&mut per_rule[slot.rule.member()]))
        {
            Ok(indices) => {
                slot.consecutive_failures = 0;
                slot.stats.events += batch.len() as u64;
                slot.stats.matches += indices.len() as u64;
                matched.push(indices);
            }
            Err(error) => {
                slot.failed(&error);
                matched.push(Vec::new());
            }
        }
    }
    for (slot, indices) in slots.iter_mut().zip(&matched) {
        for &i in indices {
            let event = &batch[i];
            if options.matches_only {
                output.matched(&Match { rule: &slot.rule, event })?;
            } else {
                let window = options.window.window_of(event.time_ms());
                slot.windows
                    .entry(window)
                    .or_default()
                    .push(event.projected(&slot.rule.metadata().summary_reads));
            }
        }
    }
    batch.clear();
    Ok(())
}

/// Applies one update between two batches.
fn apply(
    update: RuleUpdate,
    slots: &mut Vec<Slot>,
    retired: &mut Vec<RuleStats>,
    output: &mut dyn Output,
) -> std::io::Result<()> {
    match update {
        RuleUpdate::Loaded { path, rule } => {
            let id = rule.metadata().id.clone();
            // The same id replaces the running rule, whichever file it comes from; a file
            // that now holds another rule replaces what that file held.
            let by_id = slots.iter().position(|s| s.stats.id == id);
            let by_path = slots.iter().position(|s| s.path == path);
            let mut fresh = match Slot::new(path.clone(), &rule) {
                Ok(slot) => slot,
                Err(error) => {
                    tracing::error!(path = %path.display(), "refused: {error}");
                    return Ok(());
                }
            };
            match by_id.or(by_path) {
                Some(index) => {
                    let old = &mut slots[index];
                    // The old version summarizes what it matched before it goes.
                    old.close_windows(None, output)?;
                    tracing::info!(rule = %id, from = %old.stats.version, to = %fresh.stats.version, digest = %fresh.stats.digest, path = %path.display(), "rule swapped");
                    let previous = std::mem::take(&mut old.stats);
                    if previous.id == fresh.stats.id {
                        fresh.stats.events = previous.events;
                        fresh.stats.matches = previous.matches;
                        fresh.stats.alerts = previous.alerts;
                        fresh.stats.failures = previous.failures;
                        fresh.stats.swaps = previous.swaps + 1;
                    } else {
                        retired.push(previous);
                    }
                    *old = fresh;
                }
                None => {
                    tracing::info!(rule = %id, version = %fresh.stats.version, digest = %fresh.stats.digest, path = %path.display(), "rule loaded");
                    slots.push(fresh);
                }
            }
        }
        RuleUpdate::Removed { path } => {
            if let Some(index) = slots.iter().position(|s| s.path == path) {
                let mut slot = slots.remove(index);
                slot.close_windows(None, output)?;
                tracing::info!(rule = %slot.stats.id, version = %slot.stats.version, path = %path.display(), "rule unloaded: its file was removed");
                retired.push(slot.stats);
            }
        }
        RuleUpdate::Refused { path, reason } => {
            tracing::error!(path = %path.display(), "candidate refused, the running version stays: {reason}");
        }
    }
    Ok(())
}
