//! Results of work spread over threads, taken back in the order the work was handed out.

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;

/// Receives `(sequence number, result)` pairs in any order and gives the results in order
/// of their numbers, from 0.
#[derive(Debug)]
pub(crate) struct InOrder<T> {
    results: Receiver<(u64, T)>,
    waiting: BTreeMap<u64, T>,
    next: u64,
}

impl<T> InOrder<T> {
    pub(crate) fn new(results: Receiver<(u64, T)>) -> Self {
        Self { results, waiting: BTreeMap::new(), next: 0 }
    }

    /// The next result, waiting for it; `None` once every sender is gone without it.
    pub(crate) fn next_blocking(&mut self) -> Option<T> {
        loop {
            if let Some(result) = self.waiting.remove(&self.next) {
                self.next += 1;
                return Some(result);
            }
            let (seq, result) = self.results.recv().ok()?;
            self.waiting.insert(seq, result);
        }
    }

    /// The next result if it has arrived, without waiting.
    pub(crate) fn next_ready(&mut self) -> Option<T> {
        while let Ok((seq, result)) = self.results.try_recv() {
            self.waiting.insert(seq, result);
        }
        let result = self.waiting.remove(&self.next)?;
        self.next += 1;
        Some(result)
    }

    /// How many results have been taken.
    pub(crate) fn taken(&self) -> u64 {
        self.next
    }
}
