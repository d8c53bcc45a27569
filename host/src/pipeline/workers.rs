//! Batches evaluated on worker threads, each worker with its own instance (its own Store)
//! of every pack; their outcomes come back in the order the batches were handed out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;

use crate::events::{Origin, ProcessEvent};
use crate::in_order::InOrder;
use crate::runtime::{CompiledRule, Failure, Instances, RuleError, RuleOutcome};

/// What one rule's calls over one batch gave.
pub(crate) enum Outcome {
    /// The rule was called: the indices of the matching events, and the events its calls
    /// failed on, if any.
    Called { matched: Vec<usize>, lost: Option<Lost> },
    /// The rule is quarantined: not called.
    NotCalled,
}

/// Events of a batch a rule could not evaluate, and where the first of them was read.
pub(crate) struct Lost {
    pub(crate) failure: Failure,
    pub(crate) first: Origin,
}

/// Calls every pack with a rule that is not quarantined over `batch`, once.
pub(crate) fn call_rules(
    instances: &mut Instances,
    quarantined: &[AtomicBool],
    batch: &[ProcessEvent],
) -> Vec<Outcome> {
    // A failed call loses the events it failed on for this pack only: the other packs'
    // results and the next batch are not affected (the instance is already fresh).
    instances
        .evaluate(batch, |rule| quarantined[rule].load(Ordering::Relaxed))
        .into_iter()
        .map(|result| match result {
            None => Outcome::NotCalled,
            Some(RuleOutcome { matched, failure }) => Outcome::Called {
                matched,
                lost: failure.map(|failure| Lost { first: batch[failure.first].origin().clone(), failure }),
            },
        })
        .collect()
}

/// A batch handed to a worker, and what came back.
pub(crate) type Done = (Vec<ProcessEvent>, Vec<Outcome>);

/// The evaluation workers of one rule set: started for it, and let go when it changes (a
/// swap), so that every batch is evaluated by the versions loaded when it was handed out.
/// At most two batches per worker are in flight.
pub(crate) struct Workers {
    work: Option<SyncSender<(u64, Vec<ProcessEvent>)>>,
    results: InOrder<Done>,
    sent: u64,
    in_flight_limit: u64,
}

impl Workers {
    pub(crate) fn start(
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
    pub(crate) fn submit(&mut self, batch: Vec<ProcessEvent>) -> Vec<Done> {
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
    pub(crate) fn wait_all(&mut self) -> Vec<Done> {
        let mut done = Vec::new();
        while self.results.taken() < self.sent {
            done.push(self.next_blocking());
        }
        done
    }

    fn next_blocking(&mut self) -> Done {
        self.results.next_blocking().expect("the evaluation workers are running")
    }
}
