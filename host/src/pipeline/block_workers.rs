//! A file of Defender JSON lines is read in blocks, and each block is evaluated by the
//! worker that read and parsed it, with instances of its own: nothing of its events but the
//! matches crosses to another thread. The pipeline takes the blocks in in file order.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::PipelineOptions;
use super::workers::{Outcome, call_rules};
use crate::events::blocks::Stage;
use crate::events::{ProcessEvent, Record};
use crate::runtime::{CompiledRule, Instances, RuleError};

/// What a worker made of one block of lines: its records in order, where each batch of
/// events it evaluated stands at the place where the batch was full (or at the block's
/// end), as [`super::Pipeline::event`] would have evaluated it.
pub(crate) enum BlockItem {
    /// A record of another kind, a rejected one, or (in a block with lineage keys, which
    /// only the in-order table can resolve) an event not evaluated yet.
    Record(Record),
    /// A batch of events the worker evaluated.
    Evaluated(EvaluatedBatch),
}

/// A batch evaluated by the worker that parsed it.
pub(crate) struct EvaluatedBatch {
    pub(crate) len: usize,
    /// The earliest and latest event time, if any.
    pub(crate) time_range: Option<(i64, i64)>,
    pub(crate) outcomes: Vec<Outcome>,
    /// The events some rule matched, with their index in the batch; the others were freed
    /// where they were parsed.
    pub(crate) matched: Vec<(usize, ProcessEvent)>,
}

/// One stage per job, each with its own instances of `rules`.
pub(crate) fn stages(
    rules: &[Arc<CompiledRule>],
    quarantined: &Arc<[AtomicBool]>,
    options: PipelineOptions,
) -> Result<Vec<Stage<Vec<BlockItem>>>, RuleError> {
    let batch_size = options.batch_size;
    (0..options.jobs)
        .map(|_| {
            let mut instances = Instances::new(rules)?;
            let quarantined = quarantined.clone();
            let mut batch = Vec::with_capacity(batch_size);
            let stage: Stage<Vec<BlockItem>> = Box::new(move |records| {
                evaluate_block(&mut instances, &quarantined, batch_size, &mut batch, records)
            });
            Ok(stage)
        })
        .collect()
}

/// The worker's stage: evaluates the events of a block of lines in batches of
/// `batch_size` (the last one cut at the block's end) with the worker's own instances. A
/// block holding an event with lineage keys is left as it is: the lineage table resolves
/// those in input order.
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
    let mut bytes = 0;
    for record in records {
        match record {
            Record::Event(event) => {
                let size = event.value_bytes();
                if super::ends_before(batch.len(), bytes, size) {
                    items.push(BlockItem::Evaluated(evaluate_events(instances, quarantined, batch)));
                    bytes = 0;
                }
                bytes += size;
                batch.push(*event);
                if batch.len() == batch_size {
                    items.push(BlockItem::Evaluated(evaluate_events(instances, quarantined, batch)));
                    bytes = 0;
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
        .filter_map(|o| if let Outcome::Called { matched, .. } = o { Some(matched) } else { None })
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
