//! Where a live run's records come from. A source gives its records in order and hears
//! back how many of them are settled: evaluated, and what they led to written by the sink
//! and flushed. A source with offsets to commit (a Kafka consumer group member) commits
//! them then, so that a crash loses nothing and a restart repeats only what was not
//! settled; the files, pipes and standard input here have nothing to commit.

use std::ops::Range;

use crate::events::{Input, InputError, InputFormat, Record};

/// The records of an opened source, in order, in groups as they came (a group is handed
/// on whole: it should hold what has arrived, not wait for more); iterated on a thread of
/// their own.
pub type Records = Box<dyn Iterator<Item = Vec<Record>> + Send>;

/// Opens a source on the reading thread: opening may wait for the first bytes (the format
/// of standard input is told from them) while the run goes on.
pub type Opener = Box<dyn FnOnce() -> Result<Records, InputError> + Send>;

/// A source of records for [`crate::run::run`].
pub trait Source: Send {
    /// What opens it, once, on the reading thread.
    fn opener(&mut self) -> Opener;
    /// The first `records` records that the opened source gave are settled.
    fn settled(&mut self, records: u64) {
        let _ = records;
    }
    /// Records, by reading place (the first record read is 1), that the source has taken
    /// back since it was last asked: a revoked partition's, which its new owner reads again
    /// from the last committed offset. What they led to and is not written yet (their
    /// matches in open windows) is dropped, not written as if complete.
    fn withdrawn(&mut self) -> Vec<Range<u64>> {
        Vec::new()
    }
    /// How far event time has come in the first `read` records (all taken in and
    /// evaluated), when the source knows better than the latest event time among them: a
    /// topic's partitions each advance on their own, and event time is where the least
    /// advanced of them is. `Some(i64::MIN)`: not known yet, nothing may close. `None`: the
    /// latest event time evaluated, as for one ordered stream.
    fn event_time(&mut self, read: u64) -> Option<i64> {
        let _ = read;
        None
    }
    /// The source's own counters (a consumer's lag, commits, rebalances), reported with the
    /// run's; `None` when it has none.
    fn report(&self) -> Option<String> {
        None
    }
}

/// A file (followed or not), a named pipe or standard input, read in one format by the
/// input's parsing workers.
#[derive(Debug)]
pub struct InputSource {
    input: Input,
    format: InputFormat,
}

impl InputSource {
    /// `input` in `format`, its parsing workers handing on what a stream has delivered so
    /// far rather than full blocks: a slow stream still gets its events evaluated within
    /// the batch delay.
    pub fn new(input: Input, format: InputFormat) -> Self {
        Self { input: input.with_low_latency(true), format }
    }
}

impl Source for InputSource {
    fn opener(&mut self) -> Opener {
        let (input, format) = (self.input.clone(), self.format);
        Box::new(move || Ok(input.open(format)?.into_chunks()))
    }
}

pub mod kafka;
