//! Inputs read ahead on several threads, their records handed on in input order.
//!
//! A binary EVTX file is parsed by the thread that reads it, and a triage collection is
//! thousands of small files of one or two chunks each: read one after another, they use one
//! core. Here up to `threads` inputs are read at once, each by a thread of its own, into a
//! bounded queue of its own; the caller takes the inputs' records in order, so the output is
//! the same as reading them one by one. Memory stays bounded: a thread starts an input only
//! while fewer than [`INPUTS_AHEAD_PER_THREAD`] per thread lie between it and the one the
//! caller takes (a small file's records fit its queue at once, so its thread goes on to the
//! next without waiting: without that bound, a caller slower than the threads had the whole
//! folder read into memory ahead of it), and each input has at most `queued` groups of
//! records waiting (an EVTX group is one 64 KiB chunk's records).
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
    /// An input's queue published: for the caller.
    ready: Condvar,
    /// The caller took an input: room for the threads to start more.
    room: Condvar,
}

/// Inputs a reading thread may start ahead of the one the caller takes, per thread. The
/// caller takes a folder's small files in bursts: with 4, the threads waited for room, and
/// Soft Cell over 5,000 EVTX files took 6% longer than unbounded; with 32, as long.
pub const INPUTS_AHEAD_PER_THREAD: usize = 32;

struct State {
    /// The inputs not yet taken by a thread, in order.
    waiting: std::collections::VecDeque<(usize, Opener)>,
    /// The positions of every input read ahead, in order: those before `waiting`'s have been
    /// started.
    positions: Vec<usize>,
    /// How many inputs read ahead come before the one the caller takes last.
    taken: usize,
    /// Inputs that may be started ahead of the one the caller takes.
    ahead: usize,
    /// Threads waiting for room to start an input.
    waiting_for_room: usize,
    /// Each input's queue of record groups, once a thread has started reading it.
    queues: Vec<Option<Receiver<Group>>>,
    /// Set when the caller stops taking records: the threads stop reading.
    stopped: bool,
    /// Groups of records an input may have waiting to be taken.
    queued: usize,
    /// Callers waiting in [`ReadAhead::take`]: a thread that publishes a queue wakes them only
    /// when there are some (a wake-up is a system call even when nobody waits, one per input
    /// of a folder of thousands).
    takers: usize,
}

impl State {
    /// How many inputs a thread has started.
    fn started(&self) -> usize {
        self.positions.len() - self.waiting.len()
    }
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
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                positions: readers.iter().map(|(position, _)| *position).collect(),
                taken: 0,
                ahead: threads * INPUTS_AHEAD_PER_THREAD,
                waiting_for_room: 0,
                waiting: readers.into(),
                queues: (0..inputs).map(|_| None).collect(),
                stopped: false,
                queued,
                takers: 0,
            }),
            ready: Condvar::new(),
            room: Condvar::new(),
        });
        let threads = (0..threads)
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
        // The inputs before this one are done with: as many after it may be started.
        let taken = state.positions.partition_point(|&p| p < position);
        if taken > state.taken {
            state.taken = taken;
            if state.waiting_for_room > 0 {
                self.shared.room.notify_all();
            }
        }
        loop {
            if let Some(queue) = state.queues[position].take() {
                return Some(queue.into_iter());
            }
            if state.waiting.binary_search_by_key(&position, |(p, _)| *p).is_err() {
                // Neither waiting (in order) nor queued: taken already, or never given.
                return None;
            }
            state.takers += 1;
            state = self.shared.ready.wait(state).expect("the reading threads do not panic");
            state.takers -= 1;
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
        self.shared.room.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One reading thread: takes the next input, publishes its queue, reads it into the queue.
fn read_inputs(shared: &Shared) {
    loop {
        let (open, queue, takers): (Opener, SyncSender<Group>, usize) = {
            let mut state = shared.state.lock().expect("the reading threads do not panic");
            // The input the caller waits for is never more than `ahead` past the one it took
            // last, so a thread waiting here never keeps it waiting.
            while !state.stopped && !state.waiting.is_empty() && state.started() >= state.taken + state.ahead
            {
                state.waiting_for_room += 1;
                state = shared.room.wait(state).expect("the reading threads do not panic");
                state.waiting_for_room -= 1;
            }
            if state.stopped {
                return;
            }
            let Some((position, open)) = state.waiting.pop_front() else { return };
            let (queue, records) = sync_channel(state.queued);
            state.queues[position] = Some(records);
            (open, queue, state.takers)
        };
        if takers > 0 {
            shared.ready.notify_all();
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::events::input::{Input, InputFormat};

    /// Openers of `count` inputs of one Defender row each, counting how many were opened.
    fn counted_inputs(count: usize, opened: &Arc<AtomicUsize>) -> Vec<(usize, Opener)> {
        let row = br#"{"Timestamp":"2024-01-01T00:00:00Z","DeviceName":"d","FileName":"a.exe"}"#;
        (0..count)
            .map(|position| {
                let opened = opened.clone();
                let input = Input::bytes(&format!("input {position}"), row.to_vec());
                let open: Opener = Box::new(move || {
                    opened.fetch_add(1, Ordering::SeqCst);
                    input.open(InputFormat::Jsonl)
                });
                (position, open)
            })
            .collect()
    }

    /// Two reading threads over three times as many inputs as they may read ahead (more than
    /// the bound, or a test of it could not fail), each with `queued` groups waiting at most;
    /// `test` is given the read-ahead, the bound, the number of inputs and how many were
    /// opened so far. Returns how many were opened in all.
    fn past_the_bound(queued: usize, test: impl FnOnce(&ReadAhead<'_>, usize, usize, &AtomicUsize)) -> usize {
        let threads = 2;
        let ahead = threads * INPUTS_AHEAD_PER_THREAD;
        let inputs = 3 * ahead;
        let opened = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|scope| {
            let read_ahead =
                ReadAhead::start(scope, inputs, counted_inputs(inputs, &opened), threads, queued);
            test(&read_ahead, ahead, inputs, &opened);
        });
        opened.load(Ordering::SeqCst)
    }

    #[test]
    fn threads_read_only_a_few_inputs_ahead_of_a_slow_caller() {
        let mut count = 0;
        let opened_in_all = past_the_bound(8, |read_ahead, ahead, inputs, opened| {
            count = inputs;
            for position in 0..inputs {
                // Time for the threads to run as far ahead as they may.
                if position % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(50));
                    // Input `position - 1` is the last taken.
                    let opened = opened.load(Ordering::SeqCst);
                    assert!(
                        opened <= position.saturating_sub(1) + ahead,
                        "{opened} inputs opened while the caller takes input {position}"
                    );
                }
                let groups: Vec<Group> = read_ahead.take(position).expect("read ahead").collect();
                let records: usize = groups.into_iter().map(|g| g.expect("opens").len()).sum();
                assert_eq!(records, 1, "input {position}");
            }
            assert!(read_ahead.take(inputs).is_none());
        });
        assert_eq!(opened_in_all, count);
    }

    #[test]
    fn a_caller_that_takes_only_some_inputs_gets_each_of_them() {
        past_the_bound(1, |read_ahead, ahead, inputs, _| {
            // Farther apart than the bound: the inputs between are never taken, and do not hold
            // back the rest.
            for position in [0, ahead + 5, ahead + 6, inputs - 1] {
                let groups: Vec<Group> = read_ahead.take(position).expect("read ahead").collect();
                assert_eq!(groups.len(), 1, "input {position}");
            }
        });
    }
}
