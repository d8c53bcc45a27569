//! The rules a pipeline runs and what it knows of each: its open windows, its counts, its
//! failures and whether it is quarantined. The one place that decides a rule's failures.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::windows::OpenWindow;
use super::{Diagnostic, RuleSummary};
use crate::events::Origin;
use crate::runtime::{CompiledRule, Instances, RuleError};

/// Matched events by window, projected on the rule's summary reads. Rules that read the
/// same fields (the rules of a Sigma pack) share one copy of an event they all matched.
pub(crate) type Windows = BTreeMap<(i64, i64), OpenWindow>;

/// One loaded rule during a run.
pub(crate) struct RuleRun {
    pub(crate) rule: Arc<CompiledRule>,
    /// The file it was loaded from, for a live run's swaps (`None`: loaded once).
    pub(crate) source: Option<PathBuf>,
    pub(crate) windows: Windows,
    pub(crate) summary: RuleSummary,
    consecutive_failures: u32,
}

impl RuleRun {
    pub(crate) fn new(rule: Arc<CompiledRule>, source: Option<PathBuf>) -> Self {
        let summary = RuleSummary {
            id: rule.metadata().id.clone(),
            version: rule.metadata().version.clone(),
            digest: rule.digest().to_string(),
            ..RuleSummary::default()
        };
        Self { rule, source, windows: Windows::new(), summary, consecutive_failures: 0 }
    }

    pub(crate) fn is_quarantined(&self) -> bool {
        self.summary.quarantined.is_some()
    }

    /// A call of the rule worked: its run of failures ends.
    pub(crate) fn succeeded(&mut self) {
        self.consecutive_failures = 0;
    }

    /// Records a failed call over `events` events and quarantines the rule after too
    /// many in a row, raising its `flag` for the workers.
    pub(crate) fn failed(
        &mut self,
        error: &RuleError,
        events: usize,
        first: Option<&Origin>,
        flag: &AtomicBool,
        diagnose: &mut dyn FnMut(Diagnostic<'_>),
    ) {
        self.summary.failures += 1;
        self.summary.last_failure = Some(format!("{}: {}: {}", error.stage, error.kind, error.message));
        self.consecutive_failures += 1;
        // A pack's failed `evaluate` is the failure of each of its rules, reported once, by its
        // first: `None` for its other rules, else how many other rules fail with this one.
        let reported_with = match (error.stage, self.rule.member()) {
            ("evaluate", 0) => Some(self.rule.pack().members().len() - 1),
            ("evaluate", _) => None,
            _ => Some(0),
        };
        if reported_with.is_some() {
            diagnose(Diagnostic::RuleFailed { error, events, first });
        }
        let limit = self.rule.limits().max_consecutive_failures;
        if self.consecutive_failures >= limit && self.summary.quarantined.is_none() {
            self.summary.quarantined =
                Some(format!("{limit} consecutive failures, the last: {}: {}", error.kind, error.message));
            flag.store(true, Ordering::Relaxed);
            if let Some(with) = reported_with {
                diagnose(Diagnostic::Quarantined { rule: &self.summary, with });
            }
        }
    }
}

/// Every loaded rule, in load order, with this thread's instances of their packs (for one
/// job, and for the summaries) and the quarantine flags the workers read.
pub(crate) struct RuleSet {
    pub(crate) runs: Vec<RuleRun>,
    pub(crate) instances: Instances,
    /// Instances for the other threads that summarize windows when many close at once
    /// (see [`super::windows::close`]), made when first needed and kept for the next close.
    pub(crate) summarizers: Vec<Instances>,
    pub(crate) quarantined: Arc<[AtomicBool]>,
    /// Rules unloaded during the run, with their counts at the time.
    pub(crate) retired: Vec<RuleSummary>,
}

impl RuleSet {
    pub(crate) fn new(runs: Vec<RuleRun>) -> Result<Self, RuleError> {
        let rules: Vec<Arc<CompiledRule>> = runs.iter().map(|r| r.rule.clone()).collect();
        let instances = Instances::new(&rules)?;
        let quarantined = runs.iter().map(|r| AtomicBool::new(r.is_quarantined())).collect();
        Ok(Self { runs, instances, summarizers: Vec::new(), quarantined, retired: Vec::new() })
    }

    pub(crate) fn rules(&self) -> Vec<Arc<CompiledRule>> {
        self.runs.iter().map(|r| r.rule.clone()).collect()
    }

    /// Replaces the rules with `runs` (a swap): new instances and flags for them. On an
    /// error nothing has changed.
    pub(crate) fn replace(&mut self, runs: Vec<RuleRun>, retired: Vec<RuleSummary>) -> Result<(), RuleError> {
        let fresh = Self::new(runs)?;
        self.runs = fresh.runs;
        self.instances = fresh.instances;
        self.summarizers = fresh.summarizers;
        self.quarantined = fresh.quarantined;
        self.retired.extend(retired);
        Ok(())
    }
}
