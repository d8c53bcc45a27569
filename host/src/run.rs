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

/// One loaded artifact: a pack of one rule or many, with one instance.
struct Slot {
    path: PathBuf,
    rules: Vec<Arc<CompiledRule>>,
    instance: RuleInstance,
    /// Per member rule, in the pack's order.
    members: Vec<Member>,
    consecutive_failures: u32,
    quarantined: bool,
}

/// One rule of a pack: its open windows and its counters.
#[derive(Default)]
struct Member {
    windows: BTreeMap<(i64, i64), Vec<ProcessEvent>>,
    stats: RuleStats,
}

impl Slot {
    fn new(path: PathBuf, rules: Vec<Arc<CompiledRule>>) -> Result<Self, RuleError> {
        let instance = rules[0].pack().instantiate()?;
        let members = rules
            .iter()
            .map(|rule| {
                let m = rule.metadata();
                Member {
                    windows: BTreeMap::new(),
                    stats: RuleStats {
                        id: m.id.clone(),
                        version: m.version.clone(),
                        digest: rule.digest().to_string(),
                        ..RuleStats::default()
                    },
                }
            })
            .collect();
        Ok(Self { path, rules, instance, members, consecutive_failures: 0, quarantined: false })
    }

    /// Names the slot in logs: its rule, or its artifact and the number of its rules.
    fn name(&self) -> String {
        match self.members.as_slice() {
            [one] => format!("rule {} {}", one.stats.id, one.stats.version),
            many => format!("pack {} ({} rules)", self.rules[0].artifact(), many.len()),
        }
    }

    /// A failed call of the pack (its evaluate fails for all its rules at once), or of one
    /// member's summarize. Consecutive failures quarantine the whole artifact.
    fn failed(&mut self, member: Option<usize>, error: &RuleError) {
        let counted: Vec<usize> = member.map_or_else(|| (0..self.members.len()).collect(), |m| vec![m]);
        for m in counted {
            self.members[m].stats.failures += 1;
        }
        self.consecutive_failures += 1;
        let stats = &self.members[member.unwrap_or(0)].stats;
        tracing::warn!(rule = %stats.id, version = %stats.version, digest = %stats.digest, stage = error.stage, kind = %error.kind, "rule call failed: {}", error.message);
        let limit = self.rules[0].limits().max_consecutive_failures;
        if self.consecutive_failures >= limit && !self.quarantined {
            self.quarantined = true;
            tracing::error!(rule = %stats.id, version = %stats.version, digest = %stats.digest, "{} quarantined after {limit} consecutive failures; it runs again when a new version is loaded", self.name());
        }
    }

    /// Summarizes the windows of every member that end at or before `watermark` (all, with
    /// `None`).
    fn close_windows(&mut self, watermark: Option<i64>, output: &mut dyn Output) -> std::io::Result<()> {
        for member in 0..self.members.len() {
            self.close_member_windows(member, watermark, output)?;
        }
        Ok(())
    }

    fn close_member_windows(
        &mut self,
        member: usize,
        watermark: Option<i64>,
        output: &mut dyn Output,
    ) -> std::io::Result<()> {
        let closing: Vec<(i64, i64)> = self.members[member]
            .windows
            .keys()
            .filter(|(_, end)| watermark.is_none_or(|w| *end <= w))
            .copied()
            .collect();
        for window in closing {
            let mut events = self.members[member].windows.remove(&window).expect("listed above");
            if self.quarantined {
                continue;
            }
            match summarize_window(&mut self.instance, &self.rules[member], window, &mut events) {
                Ok(alerts) => {
                    self.consecutive_failures = 0;
                    self.members[member].stats.alerts += alerts.len() as u64;
                    for alert in &alerts {
                        output.alert(alert)?;
                    }
                }
                Err(error) => self.failed(Some(member), &error),
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

/// Runs until the input ends or `stop` is set. `rules` are the packs loaded at start, by
/// file (a directory's Sigma rules make one pack, named by the directory); `updates` brings
/// new versions, additions and removals. `stats` is called every `stats_interval` and once
/// at the end (with `true`).
pub fn run(
    rules: Vec<(PathBuf, Vec<Arc<CompiledRule>>)>,
    input: Input,
    updates: Receiver<RuleUpdate>,
    stop: Arc<AtomicBool>,
    options: &RunOptions,
    output: &mut dyn Output,
    stats: &mut dyn FnMut(&[RuleStats], bool),
) -> Result<RunSummary, RunError> {
    let mut slots =
        rules.into_iter().map(|(path, rules)| Slot::new(path, rules)).collect::<Result<Vec<_>, _>>()?;
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
    slots
        .iter()
        .flat_map(|s| s.members.iter().map(|m| m.stats.clone()))
        .chain(retired.iter().cloned())
        .collect()
}

fn evaluate_batch(
    slots: &mut [Slot],
    batch: &mut Vec<ProcessEvent>,
    options: &RunOptions,
    output: &mut dyn Output,
) -> std::io::Result<()> {
    let mut matched: Vec<Vec<Vec<usize>>> = Vec::with_capacity(slots.len());
    for slot in slots.iter_mut() {
        if slot.quarantined {
            matched.push(Vec::new());
            continue;
        }
        match slot.instance.evaluate(batch) {
            Ok(per_rule) => {
                slot.consecutive_failures = 0;
                for (member, indices) in slot.members.iter_mut().zip(&per_rule) {
                    member.stats.events += batch.len() as u64;
                    member.stats.matches += indices.len() as u64;
                }
                matched.push(per_rule);
            }
            Err(error) => {
                slot.failed(None, &error);
                matched.push(Vec::new());
            }
        }
    }
    for (slot, per_rule) in slots.iter_mut().zip(&matched) {
        for (member, indices) in per_rule.iter().enumerate() {
            let rule = &slot.rules[member];
            for &i in indices {
                let event = &batch[i];
                if options.matches_only {
                    output.matched(&Match { rule, event })?;
                } else {
                    let window = options.window.window_of(event.time_ms());
                    slot.members[member]
                        .windows
                        .entry(window)
                        .or_default()
                        .push(event.projected(&rule.metadata().summary_reads));
                }
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
        RuleUpdate::Loaded { path, rules, unchanged } => {
            let ids: Vec<String> = rules.iter().map(|r| r.metadata().id.clone()).collect();
            // A file that now holds another version replaces what it held; a rule id that
            // another file held moves here with its counters, whichever file it came from.
            let by_path = slots.iter().position(|s| s.path == path);
            let by_id = || slots.iter().position(|s| s.members.iter().any(|m| ids.contains(&m.stats.id)));
            let mut fresh = match Slot::new(path.clone(), rules) {
                Ok(slot) => slot,
                Err(error) => {
                    tracing::error!(path = %path.display(), "refused: {error}");
                    return Ok(());
                }
            };
            let Some(index) = by_path.or_else(by_id) else {
                log_loaded(&fresh, &path);
                slots.push(fresh);
                return Ok(());
            };
            let mut old = slots.remove(index);
            let (mut changed, mut kept) = (0usize, 0usize);
            for member in 0..old.members.len() {
                let id = old.members[member].stats.id.clone();
                let successor = fresh.members.iter().position(|m| m.stats.id == id);
                let same = unchanged.contains(&id) && successor.is_some() && !old.quarantined;
                if same {
                    // The same rule in the new pack: its open windows move with it.
                    let windows = std::mem::take(&mut old.members[member].windows);
                    fresh.members[successor.unwrap()].windows = windows;
                    kept += 1;
                } else {
                    // The old version summarizes what it matched before it goes.
                    old.close_member_windows(member, None, output)?;
                    changed += 1;
                }
                let previous = std::mem::take(&mut old.members[member].stats);
                match successor {
                    Some(s) => {
                        let stats = &mut fresh.members[s].stats;
                        stats.events = previous.events;
                        stats.matches = previous.matches;
                        stats.alerts = previous.alerts;
                        stats.failures = previous.failures;
                        stats.swaps = previous.swaps + u64::from(!same);
                    }
                    None => retired.push(previous),
                }
            }
            match (old.members.as_slice(), fresh.members.as_slice()) {
                ([from], [to]) => {
                    tracing::info!(rule = %to.stats.id, from = %from.stats.version, to = %to.stats.version, digest = %to.stats.digest, path = %path.display(), "rule swapped")
                }
                (_, new) => {
                    let added = new.len().saturating_sub(kept + changed);
                    tracing::info!(pack = %fresh.rules[0].artifact(), rules = new.len(), unchanged = kept, replaced = changed, added, digest = %new[0].stats.digest, path = %path.display(), "pack swapped")
                }
            }
            slots.insert(index, fresh);
        }
        RuleUpdate::Removed { path } => {
            if let Some(index) = slots.iter().position(|s| s.path == path) {
                let mut slot = slots.remove(index);
                slot.close_windows(None, output)?;
                tracing::info!(what = %slot.name(), path = %path.display(), "unloaded: its file was removed");
                retired.extend(slot.members.into_iter().map(|m| m.stats));
            }
        }
        RuleUpdate::Refused { path, reason } => {
            tracing::error!(path = %path.display(), "candidate refused, the running version stays: {reason}");
        }
    }
    Ok(())
}

fn log_loaded(slot: &Slot, path: &std::path::Path) {
    match slot.members.as_slice() {
        [one] => {
            tracing::info!(rule = %one.stats.id, version = %one.stats.version, digest = %one.stats.digest, path = %path.display(), "rule loaded")
        }
        many => {
            tracing::info!(pack = %slot.rules[0].artifact(), rules = many.len(), digest = %many[0].stats.digest, path = %path.display(), "pack loaded")
        }
    }
}
