//! Inputs read ahead on several threads, their records handed on in input order.
//!
//! A binary EVTX file is parsed by the thread that reads it, and a triage collection is
//! thousands of small files of one or two chunks each: read one after another, they use one
//! core. Here up to `threads` inputs are read at once, each by a thread of its own, into a
//! bounded queue of its own; the caller takes the inputs' records in order, so the output is
//! the same as reading them one by one. Memory stays bounded: at most `threads` inputs are
//! in flight, each with at most `queued` groups of records waiting (an EVTX group is one
//! 64 KiB chunk's records).
//!
//! Each input is opened by the thread that reads it: opening an EVTX file reads and checks
//! its header, and a folder of 5,000 files opened one after another before any was read took
//! a fifth of a run.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use super::Record;
use super::input::{InputError, Reader};

/// How an input read ahead is opened, on the thread that reads it.
pub type Opener = Box<dyn FnOnce() -> Result<Reader, InputError> + Send>;

/// A group of an input's records, or the error that kept it from being opened.
pub type Group = Result<Vec<Record>, InputError>;

/// An input's record groups, as [`ReadAhead::take`] gives them.
pub type Groups = std::sync::mpsc::IntoIter<Group>;

/// Inputs being read ahead, each identified by its position in the list given.
pub struct ReadAhead<'scope> {
    shared: Arc<Shared>,
    threads: Vec<ScopedJoinHandle<'scope, ()>>,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

struct State {
    /// The inputs not yet taken by a thread, in order.
    waiting: std::collections::VecDeque<(usize, Opener)>,
    /// Each input's queue of record groups, once a thread has started reading it.
    queues: Vec<Option<Receiver<Group>>>,
    /// Set when the caller stops taking records: the threads stop reading.
    stopped: bool,
    /// Groups of records an input may have waiting to be taken.
    queued: usize,
}

impl<'scope> ReadAhead<'scope> {
    /// Starts opening and reading `readers` (input position, opener), in order, on `threads`
    /// threads of `scope`, each input with up to `queued` groups of records waiting to be
    /// taken. `inputs` is the number of positions.
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        inputs: usize,
        readers: Vec<(usize, Opener)>,
        threads: usize,
        queued: usize,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                waiting: readers.into(),
                queues: (0..inputs).map(|_| None).collect(),
                stopped: false,
                queued,
            }),
            ready: Condvar::new(),
        });
        let threads = (0..threads.max(1))
            .map(|_| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name("rulehost-read".into())
                    .spawn_scoped(scope, move || read_inputs(&shared))
                    .expect("starting a reading thread")
            })
            .collect();
        Self { shared, threads }
    }

    /// The record groups of input `position` (or the error opening it), waiting for a thread
    /// to start reading it; `None` when it is not one of the inputs read ahead.
    pub fn take(&self, position: usize) -> Option<Groups> {
        let mut state = self.shared.state.lock().expect("the reading threads do not panic");
        state.queues.get(position)?;
        loop {
            if let Some(queue) = state.queues[position].take() {
                return Some(queue.into_iter());
            }
            if state.waiting.binary_search_by_key(&position, |(p, _)| *p).is_err() {
                // Neither waiting (in order) nor queued: taken already, or never given.
                return None;
            }
            state = self.shared.ready.wait(state).expect("the reading threads do not panic");
        }
    }
}

impl Drop for ReadAhead<'_> {
    /// Stops the threads: queues still held are dropped, so a thread blocked on a full one
    /// finds it gone, and the others take no new input.
    fn drop(&mut self) {
        if let Ok(mut state) = self.shared.state.lock() {
            state.stopped = true;
            state.waiting.clear();
            state.queues.iter_mut().for_each(|q| *q = None);
        }
        self.shared.ready.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One reading thread: takes the next input, publishes its queue, reads it into the queue.
fn read_inputs(shared: &Shared) {
    loop {
        let (open, queue): (Opener, SyncSender<Group>) = {
            let mut state = shared.state.lock().expect("the reading threads do not panic");
            if state.stopped {
                return;
            }
            let Some((position, open)) = state.waiting.pop_front() else { return };
            let (queue, records) = sync_channel(state.queued);
            state.queues[position] = Some(records);
            (open, queue)
        };
        shared.ready.notify_all();
        let reader = match open() {
            Ok(reader) => reader,
            Err(error) => {
                let _ = queue.send(Err(error));
                continue;
            }
        };
        for group in reader.into_chunks() {
            // The caller dropped this input's queue: it stopped taking records.
            if queue.send(Ok(group)).is_err() {
                break;
            }
        }
    }
}
