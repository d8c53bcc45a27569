//! A Kafka topic as a source: `rulehost run` as a member of a consumer group. Every message
//! holds any JSON shape `eval` reads (a Defender streaming-API message is
//! `{"records": [..]}`); its records are named `TOPIC/PARTITION@OFFSET` and their number.
//! Offsets are committed only for messages whose every record is settled (evaluated, and
//! what it led to written by the sink and flushed, its windows closed), so delivery is at
//! least once: after a crash the group resumes from the oldest message not yet settled.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{Opener, Records, Source};
use crate::events::{Input, InputError, InputFormat, Origin, Position, Record, RecordError, RejectReason};

/// The largest message read; a larger one is rejected (counted and reported) unread.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Devices whose partition is remembered, for the warning that one device's events come
/// from several partitions; past that, new devices are not checked.
const DEVICES_CHECKED: usize = 100_000;

/// Messages handed on together at most (fewer when the topic has no more for now).
const MESSAGES_PER_GROUP: usize = 1024;

/// Payload bytes handed on together at most (past them, the group ends with the message
/// that passed them): with the run's channel of 16 groups, what a member holds between
/// reading and evaluating stays bounded under any lag, whatever the messages' size.
const BYTES_PER_GROUP: usize = 4 << 20;

/// How often a warning that repeats is logged again, with how many times it came between.
const REPEATED_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Distinct warnings remembered for [`RepeatedWarnings`]; past them, all are forgotten.
const REPEATED_WARNINGS_KEPT: usize = 64;

/// The client's and the consumer's warnings, each logged when it first comes and then at
/// most once a [`REPEATED_WARNING_INTERVAL`]: a batch the client cannot read (a codec it
/// lacks, damaged data) is fetched again and fails the same way twice a second, for as long
/// as its partition is stuck there, and the log would be nothing else.
#[derive(Debug, Default)]
struct RepeatedWarnings {
    /// By text: when it was last logged, and how many times it came since.
    seen: HashMap<String, (Instant, u64)>,
}

impl RepeatedWarnings {
    /// Whether `text`, come at `now`, is to be logged: with how many times it came since it
    /// last was (`Some(0)` the first time), or `None` when it was logged less than an
    /// interval ago.
    fn admit(&mut self, text: &str, now: Instant) -> Option<u64> {
        if let Some((logged, since)) = self.seen.get_mut(text) {
            if now.saturating_duration_since(*logged) < REPEATED_WARNING_INTERVAL {
                *since += 1;
                return None;
            }
            let repeats = *since;
            *logged = now;
            *since = 0;
            return Some(repeats);
        }
        if self.seen.len() >= REPEATED_WARNINGS_KEPT {
            self.seen.clear();
        }
        self.seen.insert(text.to_owned(), (now, 0));
        Some(0)
    }

    /// Logs `text` as a warning about `topic`, if [`Self::admit`] says so.
    fn warn(&mut self, topic: &str, text: String) {
        match self.admit(&text, Instant::now()) {
            None => {}
            Some(0) => tracing::warn!(topic = %topic, "{text}"),
            Some(repeats) => tracing::warn!(
                topic = %topic,
                "{text} (and {repeats} times more in the last {} s, not logged)",
                REPEATED_WARNING_INTERVAL.as_secs()
            ),
        }
    }
}

/// How long a partition may have messages unread and deliver none, while the member keeps
/// polling, before it is warned of.
const STALL_WARNING_AFTER: Duration = Duration::from_secs(30);

/// The assigned partitions whose messages are there (the broker says so) but do not come:
/// the lag in the counters shows it, this says it in words, once, and again when messages
/// come. It is read from the client's statistics, which come only while the member polls,
/// so a member held back by its pipeline or sink is never taken for one.
#[derive(Debug, Default)]
struct Stalls {
    partitions: BTreeMap<i32, Stall>,
}

/// One partition's reading position, since when it has not moved with messages unread,
/// and whether that was warned of.
#[derive(Debug, Clone, Copy)]
struct Stall {
    position: i64,
    since: Instant,
    warned: bool,
}

/// What [`Stalls::observe`] has to report of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StallChange {
    /// Messages unread from `position`, none delivered for `stalled`.
    Stalled { unread: i64, position: i64, stalled: Duration },
    /// A partition warned of delivers again, after `stalled`.
    Moving { stalled: Duration },
}

impl Stalls {
    /// A partition's `unread` messages and reading `position` at `now`.
    fn observe(&mut self, partition: i32, unread: i64, position: i64, now: Instant) -> Option<StallChange> {
        let fresh = Stall { position, since: now, warned: false };
        let stall = self.partitions.entry(partition).or_insert(fresh);
        if stall.position != position || unread == 0 {
            let change =
                stall.warned.then(|| StallChange::Moving { stalled: now.duration_since(stall.since) });
            *stall = fresh;
            return change;
        }
        let stalled = now.duration_since(stall.since);
        if stall.warned || stalled < STALL_WARNING_AFTER {
            return None;
        }
        stall.warned = true;
        Some(StallChange::Stalled { unread, position, stalled })
    }

    /// The assigned partitions' `readings` (partition, messages unread, reading position) at
    /// `now`, and what to report of them. The partitions not among them are forgotten (a
    /// partition assigned again starts afresh), and all are while no broker is `reachable`:
    /// that is warned of already, and a stall counts from when one is back.
    fn observe_all(
        &mut self,
        readings: &[(i32, i64, i64)],
        reachable: bool,
        now: Instant,
    ) -> Vec<(i32, StallChange)> {
        if !reachable {
            self.partitions.clear();
            return Vec::new();
        }
        self.partitions.retain(|partition, _| readings.iter().any(|r| r.0 == *partition));
        readings
            .iter()
            .filter_map(|&(partition, unread, position)| {
                self.observe(partition, unread, position, now).map(|change| (partition, change))
            })
            .collect()
    }
}

/// `kafka://BROKER[,BROKER...]/TOPIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaAddress {
    /// `host:port,...`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
}

impl KafkaAddress {
    /// Parses `kafka://BROKERS/TOPIC`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest =
            text.strip_prefix("kafka://").ok_or_else(|| format!("{text}: does not start with kafka://"))?;
        let (brokers, topic) = rest
            .split_once('/')
            .ok_or_else(|| format!("{text}: no topic (kafka://BROKER[,BROKER]/TOPIC)"))?;
        let legal = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if brokers.is_empty() || topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) {
            return Err(format!(
                "{text}: not kafka://BROKER[,BROKER]/TOPIC (a topic is letters, digits, . _ -)"
            ));
        }
        Ok(KafkaAddress { brokers: brokers.to_owned(), topic: topic.to_owned() })
    }
}

/// Settings of a client: the address and any librdkafka properties (`security.protocol`,
/// `sasl.mechanism`, `sasl.username`, `ssl.ca.location`, ...).
pub fn client_config(address: &KafkaAddress, options: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &address.brokers);
    for (key, value) in options {
        config.set(key, value);
    }
    config
}

/// The consumer's context: it logs every rebalance, and forgets the messages of revoked
/// partitions (their new owner commits them).
#[derive(Debug, Default)]
pub struct GroupContext {
    ledger: Arc<Mutex<Ledger>>,
    topic: String,
    counters: Mutex<Counters>,
    warnings: Mutex<RepeatedWarnings>,
    stalls: Mutex<Stalls>,
}

/// What the source reports with the run's counters.
#[derive(Debug, Default, Clone)]
struct Counters {
    commits: u64,
    rebalances: u64,
    /// Per assigned partition, from librdkafka's statistics: messages not yet read, and
    /// read but not committed.
    lag: BTreeMap<i32, (i64, i64)>,
    /// Errors the client reported (a broker unreachable, a request that failed).
    errors: u64,
    /// Since when no broker has been reachable, if none is.
    down_since: Option<std::time::SystemTime>,
}

impl ClientContext for GroupContext {
    /// The client reconnects by itself; a broker that went away is reported once, and
    /// again when one is back (see `stats`), the errors in between only counted.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure};
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters.errors += 1;
        let unreachable = matches!(error.rdkafka_error_code(), Some(AllBrokersDown | BrokerTransportFailure));
        if !unreachable {
            drop(counters);
            let mut warnings = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
            warnings.warn(&self.topic, format!("the Kafka client reports: {error}: {reason}"));
        } else if counters.down_since.is_none() {
            counters.down_since = Some(std::time::SystemTime::now());
            tracing::warn!(topic = %self.topic, "broker unreachable, waiting for it (reading resumes where it stopped): {reason}");
        } else {
            tracing::debug!(topic = %self.topic, "broker still unreachable: {reason}");
        }
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let up = statistics.brokers.values().any(|b| b.source != "internal" && b.state == "UP");
        if up && let Some(since) = counters.down_since.take() {
            let seconds = since.elapsed().unwrap_or_default().as_secs();
            tracing::info!(topic = %self.topic, "broker reachable again after {seconds} s: reading resumes");
        }
        let Some(topic) = statistics.topics.get(&self.topic) else { return };
        counters.lag.clear();
        // Per assigned partition: messages unread, and the reading position.
        let mut readings: Vec<(i32, i64, i64)> = Vec::new();
        for (&partition, p) in &topic.partitions {
            if partition < 0 || !p.desired || p.hi_offset < 0 {
                continue;
            }
            let position = if p.app_offset >= 0 { p.app_offset } else { p.committed_offset.max(0) };
            let committed = p.committed_offset.max(0);
            let unread = (p.hi_offset - position).max(0);
            counters.lag.insert(partition, (unread, (position - committed).max(0)));
            readings.push((partition, unread, position));
        }
        let reachable = counters.down_since.is_none();
        let mut stalls = self.stalls.lock().unwrap_or_else(|e| e.into_inner());
        for (partition, change) in stalls.observe_all(&readings, reachable, Instant::now()) {
            match change {
                StallChange::Stalled { unread, position, stalled } => tracing::warn!(
                    topic = %self.topic,
                    partition,
                    "{unread} messages unread from offset {position}, and none has come for {} s while the member kept asking: the broker does not deliver them (its log, or RULEHOST_LOG=librdkafka=debug with --kafka-option debug=fetch, says more)",
                    stalled.as_secs()
                ),
                StallChange::Moving { stalled } => tracing::info!(
                    topic = %self.topic,
                    partition,
                    "messages come again, after {} s",
                    stalled.as_secs()
                ),
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &TopicPartitionList| {
            list.elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.counters.lock().unwrap_or_else(|e| e.into_inner()).rebalances += 1;
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(partitions = %partitions(list), "rebalance: partitions assigned");
                let assigned: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                self.ledger.lock().unwrap_or_else(|e| e.into_inner()).assign(&assigned);
            }
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = %partitions(list), "rebalance: partitions revoked");
                let revoked: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                self.ledger.lock().unwrap_or_else(|e| e.into_inner()).revoke(&revoked);
            }
            Rebalance::Error(e) => tracing::warn!("rebalance failed: {e}"),
        }
    }
}

/// Which messages are in flight, in reading order, and what became of the partitions
/// revoked since the source last asked.
#[derive(Debug, Default)]
struct Ledger {
    /// Records read.
    read: u64,
    messages_read: u64,
    messages: VecDeque<InFlight>,
    /// Reading places of the records of revoked partitions not yet settled.
    withdrawn: Vec<Range<u64>>,
    /// Partitions revoked, whose offsets this member no longer commits.
    revoked: Vec<i32>,
    /// The event time of each assigned partition.
    clocks: BTreeMap<i32, PartitionClock>,
    /// How long a partition may deliver nothing and still hold event time back.
    idle_timeout: Duration,
    /// Event time as it changed, by the number of records read then, oldest first: the
    /// first is the one that applies to what the pipeline has taken in.
    event_times: VecDeque<(u64, Option<i64>)>,
}

/// Where one partition is in event time.
#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    /// The latest event time of its records, if any came yet.
    latest: Option<i64>,
    /// When it was assigned or last delivered a message.
    heard: Instant,
}

impl PartitionClock {
    /// A partition heard of at `now` (assigned), none of its records seen yet.
    fn new(now: Instant) -> Self {
        PartitionClock { latest: None, heard: now }
    }
}

/// A message read and not yet settled.
#[derive(Debug, Clone)]
struct InFlight {
    /// The reading places of its records.
    records: Range<u64>,
    partition: i32,
    /// Its offset; `None` once its partition is revoked (its new owner commits it).
    offset: Option<i64>,
}

impl Ledger {
    /// Forgets the offsets of the messages of `revoked` partitions, and withdraws their
    /// records.
    fn revoke(&mut self, revoked: &[i32]) {
        // The messages stay, as entries with nothing to commit, so that the reading places
        // still line up.
        for message in self.messages.iter_mut() {
            if message.offset.is_some() && revoked.contains(&message.partition) {
                message.offset = None;
                match self.withdrawn.last_mut() {
                    Some(last) if last.end == message.records.start => last.end = message.records.end,
                    _ => self.withdrawn.push(message.records.clone()),
                }
            }
        }
        self.revoked.extend_from_slice(revoked);
        self.clocks.retain(|partition, _| !revoked.contains(partition));
        self.note_event_time(Instant::now());
    }

    /// Starts the clocks of newly assigned partitions: until one delivers a record or
    /// stays idle for the idle timeout, it holds event time back.
    fn assign(&mut self, assigned: &[i32]) {
        let now = Instant::now();
        for &partition in assigned {
            self.clocks.entry(partition).or_insert(PartitionClock::new(now));
        }
        self.note_event_time(now);
    }

    /// A message of `partition` whose records reach `latest` in event time.
    fn heard(&mut self, partition: i32, latest: Option<i64>, now: Instant) {
        let clock = self.clocks.entry(partition).or_insert(PartitionClock::new(now));
        clock.latest = clock.latest.max(latest);
        clock.heard = now;
    }

    /// Event time over the assigned partitions at `now`: the least advanced partition's,
    /// leaving aside the ones idle for the idle timeout (if all are, the most advanced
    /// one's); `None` with no partition.
    fn event_time(&self, now: Instant) -> Option<i64> {
        let active = self.clocks.values().filter(|c| now.duration_since(c.heard) < self.idle_timeout);
        match active.map(|c| c.latest.unwrap_or(i64::MIN)).min() {
            Some(least) => Some(least),
            None if self.clocks.is_empty() => None,
            None => Some(self.clocks.values().filter_map(|c| c.latest).max().unwrap_or(i64::MIN)),
        }
    }

    /// Records the event time as of the records read so far, if it changed.
    fn note_event_time(&mut self, now: Instant) {
        let time = self.event_time(now);
        if self.event_times.back().map(|&(_, t)| t) != Some(time) {
            self.event_times.push_back((self.read, time));
        }
    }

    /// The event time that applies once the first `read` records are taken in.
    fn event_time_at(&mut self, read: u64) -> Option<i64> {
        while self.event_times.len() > 1 && self.event_times[1].0 <= read {
            self.event_times.pop_front();
        }
        match self.event_times.front() {
            Some(&(at, time)) if at <= read => time,
            // Nothing known of the records taken in: hold.
            _ => Some(i64::MIN),
        }
    }
}

/// A consumer group member's topic.
pub struct KafkaSource {
    address: KafkaAddress,
    consumer: Arc<BaseConsumer<GroupContext>>,
    ledger: Arc<Mutex<Ledger>>,
    committed: BTreeMap<i32, i64>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource").field("address", &self.address).finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Joins `group` on `address`'s topic. The group's committed offsets say where it
    /// starts; a new group starts at the earliest message.
    /// A partition that delivers nothing for `idle_timeout` stops holding event time back.
    pub fn new(
        address: KafkaAddress,
        group: &str,
        options: &[(String, String)],
        idle_timeout: Duration,
    ) -> Result<Self, InputError> {
        let mut config = client_config(&address, &[]);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // A fetch waits at most this long for data: librdkafka's 500 ms default is what
            // a broker that holds every fetch for its full wait (tansu does) gives per
            // round trip, and what an idle partition adds to the latency.
            .set("fetch.wait.max.ms", "50")
            // A partition whose local queue is full waits this long before it is fetched
            // again. librdkafka's default is 1 s: a member slower than the broker (any
            // member that evaluates) filled its queue, then read nothing for a second at a
            // time, and took real records at half the rate it reads them from a file. The
            // queue stays bounded (`queued.max.messages.kbytes`).
            .set("fetch.queue.backoff.ms", "10")
            // The lag the source reports with the run's counters.
            .set("statistics.interval.ms", "1000");
        for (key, value) in options {
            config.set(key, value);
        }
        let error = |e: rdkafka::error::KafkaError| InputError::Io {
            path: format!("kafka://{}/{}", address.brokers, address.topic),
            source: std::io::Error::other(e.to_string()),
        };
        let ledger = Arc::new(Mutex::new(Ledger { idle_timeout, ..Ledger::default() }));
        let context = GroupContext {
            ledger: ledger.clone(),
            topic: address.topic.clone(),
            counters: Mutex::default(),
            warnings: Mutex::default(),
            stalls: Mutex::default(),
        };
        let consumer: BaseConsumer<GroupContext> = config.create_with_context(context).map_err(error)?;
        consumer.subscribe(&[&address.topic]).map_err(error)?;
        Ok(KafkaSource { address, consumer: Arc::new(consumer), ledger, committed: BTreeMap::new() })
    }
}

impl Source for KafkaSource {
    fn opener(&mut self) -> Opener {
        let consumer = self.consumer.clone();
        let ledger = self.ledger.clone();
        let topic = self.address.topic.clone();
        Box::new(move || {
            Ok(Box::new(MessageGroups {
                consumer,
                ledger,
                topic,
                devices: DeviceCheck::default(),
                warnings: RepeatedWarnings::default(),
            }) as Records)
        })
    }

    fn report(&self) -> Option<String> {
        let counters = self.consumer.context().counters.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let messages = self.ledger.lock().unwrap_or_else(|e| e.into_inner()).messages_read;
        let unread: i64 = counters.lag.values().map(|l| l.0).sum();
        let uncommitted: i64 = counters.lag.values().map(|l| l.1).sum();
        let down = match counters.down_since {
            Some(since) => {
                format!(", broker unreachable for {} s", since.elapsed().unwrap_or_default().as_secs())
            }
            None => String::new(),
        };
        Some(format!(
            "kafka {}: {messages} messages read, {} commits, {} rebalances, {} partitions assigned, lag {unread} unread and {uncommitted} read but not committed, {} client errors{down}",
            self.address.topic,
            counters.commits,
            counters.rebalances,
            counters.lag.len(),
            counters.errors,
        ))
    }

    fn event_time(&mut self, read: u64) -> Option<i64> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner()).event_time_at(read)
    }

    fn withdrawn(&mut self) -> Vec<Range<u64>> {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        for partition in std::mem::take(&mut ledger.revoked) {
            self.committed.remove(&partition);
        }
        std::mem::take(&mut ledger.withdrawn)
    }

    fn settled(&mut self, records: u64) {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        {
            let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            while let Some(message) = ledger.messages.front() {
                if message.records.end > records + 1 {
                    break;
                }
                if let Some(offset) = message.offset {
                    next.insert(message.partition, offset + 1);
                }
                ledger.messages.pop_front();
            }
        }
        next.retain(|partition, offset| self.committed.get(partition) != Some(offset));
        if next.is_empty() {
            return;
        }
        // Asynchronous: the evaluation does not wait for the broker. A commit that is lost
        // (a crash before it lands) only repeats messages; the last one is made
        // synchronously when the source is dropped.
        match self.commit(&next, CommitMode::Async) {
            Ok(()) => {
                self.committed.extend(next);
                self.consumer.context().counters.lock().unwrap_or_else(|e| e.into_inner()).commits += 1;
            }
            // A partition revoked in a rebalance refuses the commit: its new owner starts
            // from the last offset committed, and repeats what this member had read.
            Err(e) => tracing::warn!(topic = %self.address.topic, "offsets not committed: {e}"),
        }
    }
}

impl KafkaSource {
    fn commit(&self, offsets: &BTreeMap<i32, i64>, mode: CommitMode) -> rdkafka::error::KafkaResult<()> {
        let mut list = TopicPartitionList::new();
        for (&partition, &offset) in offsets {
            list.add_partition_offset(&self.address.topic, partition, Offset::Offset(offset))?;
        }
        self.consumer.commit(&list, mode)
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        if self.committed.is_empty() {
            return;
        }
        match self.commit(&self.committed, CommitMode::Sync) {
            Ok(()) => {
                tracing::info!(topic = %self.address.topic, partitions = self.committed.len(), "offsets committed")
            }
            Err(e) => tracing::warn!(topic = %self.address.topic, "the last offsets were not committed: {e}"),
        }
    }
}

/// The records of the messages as they come, a group per poll.
struct MessageGroups {
    consumer: Arc<BaseConsumer<GroupContext>>,
    ledger: Arc<Mutex<Ledger>>,
    topic: String,
    devices: DeviceCheck,
    warnings: RepeatedWarnings,
}

/// The partition each device's events came from (`None` once it was warned of).
#[derive(Default)]
struct DeviceCheck {
    partition_of: HashMap<String, Option<i32>>,
}

impl DeviceCheck {
    /// Warns, once per device, when a device's events come from a second partition:
    /// alerts summarize by device, and are right across a group only when one member sees
    /// all of a device's events.
    fn check(&mut self, topic: &str, records: &[Record], partition: i32) {
        let full = self.partition_of.len() >= DEVICES_CHECKED;
        for record in records {
            let Record::Event(event) = record else { continue };
            let device = event.get(crate::events::Field::DeviceName);
            match self.partition_of.get(device) {
                Some(Some(seen)) if *seen != partition => {
                    tracing::warn!(topic = %topic, device, partitions = %format!("{seen} and {partition}"), "events of one device come from several partitions: key events by device, or a window's alert may be split across members");
                    self.partition_of.insert(device.to_owned(), None);
                }
                Some(_) => {}
                None if !full => {
                    self.partition_of.insert(device.to_owned(), Some(partition));
                }
                None => {}
            }
        }
    }
}

impl Iterator for MessageGroups {
    type Item = Vec<Record>;

    fn next(&mut self) -> Option<Vec<Record>> {
        loop {
            let mut records = Vec::new();
            let mut timeout = Duration::from_millis(100);
            let mut bytes = 0usize;
            for _ in 0..MESSAGES_PER_GROUP {
                if bytes >= BYTES_PER_GROUP {
                    break;
                }
                let Some(polled) = self.consumer.poll(timeout) else { break };
                // Once a message has come, take what else is there without waiting.
                timeout = Duration::ZERO;
                let message = match polled {
                    Ok(message) => message,
                    Err(e) => {
                        self.warnings.warn(&self.topic, format!("the consumer reports: {e}"));
                        continue;
                    }
                };
                let before = records.len();
                bytes += message.payload_len();
                let name = format!("{}/{}@{}", message.topic(), message.partition(), message.offset());
                read_message(&name, message.payload().unwrap_or_default(), &mut records);
                self.devices.check(&self.topic, &records[before..], message.partition());
                let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
                let latest = records[before..]
                    .iter()
                    .filter_map(|r| match r {
                        Record::Event(event) => Some(event.time_ms()),
                        _ => None,
                    })
                    .max();
                let now = Instant::now();
                ledger.heard(message.partition(), latest, now);
                let first = ledger.read + 1;
                ledger.read += (records.len() - before) as u64;
                let places = first..ledger.read + 1;
                ledger.messages.push_back(InFlight {
                    records: places,
                    partition: message.partition(),
                    offset: Some(message.offset()),
                });
                ledger.messages_read += 1;
            }
            // Once per poll, with a message or without: a partition may have gone idle.
            self.ledger.lock().unwrap_or_else(|e| e.into_inner()).note_event_time(Instant::now());
            if !records.is_empty() {
                return Some(records);
            }
        }
    }
}

/// The records of one message's payload; a payload that is not a readable JSON document
/// is one rejected record, named by the message.
pub fn read_message(name: &str, payload: &[u8], records: &mut Vec<Record>) {
    let origin = Origin { file: name.into(), position: Position::Record(1) };
    let reject = |reason: RejectReason| Record::Rejected(RecordError { origin: origin.clone(), reason });
    if payload.len() > MAX_MESSAGE_BYTES {
        records.push(reject(RejectReason::UnknownShape(format!(
            "a message of {} bytes (at most {MAX_MESSAGE_BYTES})",
            payload.len()
        ))));
        return;
    }
    // A document on one line (what producers send) is parsed as a JSON line, in place: the
    // scan that dismisses skipped kinds unparsed, and the borrowed parse of Defender rows;
    // a pretty-printed one goes through the general document reader.
    let before = records.len();
    if !payload.trim_ascii().contains(&b'\n') {
        let line = Origin { file: origin.file.clone(), position: Position::Line(1) };
        crate::events::parse_json_line(payload, true, false, line, records);
    } else {
        match Input::bytes(name, payload.to_vec()).open(InputFormat::Json) {
            Ok(reader) => records.extend(reader),
            Err(e) => records.push(reject(RejectReason::UnknownShape(e.to_string()))),
        }
    }
    if records.len() == before {
        records.push(reject(RejectReason::UnknownShape("a message with no record".to_owned())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(records: Range<u64>, partition: i32, offset: i64) -> InFlight {
        InFlight { records, partition, offset: Some(offset) }
    }

    #[test]
    fn a_revoked_partition_withdraws_its_records_and_commits_nothing_more() {
        let mut ledger = Ledger::default();
        ledger.messages.extend([
            message(1..3, 0, 10),
            message(3..4, 0, 11),
            message(4..6, 1, 7),
            message(6..6, 0, 12),
            message(6..9, 0, 13),
        ]);
        ledger.revoke(&[0]);
        // Adjacent messages of the partition make one range; the empty one adds nothing.
        assert_eq!(ledger.withdrawn, vec![1..4, 6..9]);
        assert_eq!(ledger.revoked, vec![0]);
        let offsets: Vec<Option<i64>> = ledger.messages.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, vec![None, None, Some(7), None, None]);
        // Revoked again (a second rebalance), nothing is withdrawn twice.
        ledger.withdrawn.clear();
        ledger.revoke(&[0]);
        assert!(ledger.withdrawn.is_empty());
    }

    #[test]
    fn a_warning_that_repeats_is_logged_at_most_once_an_interval_with_its_count() {
        let start = Instant::now();
        let mut warnings = RepeatedWarnings::default();
        let stuck = "the consumer reports: Decompression (codec 0x4) of message at 0 failed";
        assert_eq!(warnings.admit(stuck, start), Some(0), "logged when it first comes");
        for n in 1..=119 {
            // Twice a second, as a stuck partition's fetches fail.
            assert_eq!(warnings.admit(stuck, start + Duration::from_millis(500 * n)), None);
        }
        assert_eq!(
            warnings.admit("another", start + Duration::from_secs(1)),
            Some(0),
            "each text on its own"
        );
        assert_eq!(warnings.admit(stuck, start + REPEATED_WARNING_INTERVAL), Some(119));
        assert_eq!(warnings.admit(stuck, start + REPEATED_WARNING_INTERVAL + Duration::from_secs(1)), None);
        // What it remembers is bounded: past it, every text is new again.
        for n in 0..REPEATED_WARNINGS_KEPT {
            warnings.admit(&format!("text {n}"), start);
        }
        assert!(warnings.seen.len() <= REPEATED_WARNINGS_KEPT);
        assert_eq!(warnings.admit(stuck, start + REPEATED_WARNING_INTERVAL), Some(0));
    }

    #[test]
    fn a_partition_with_messages_unread_that_delivers_none_is_warned_of_once_and_again_when_it_moves() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut stalls = Stalls::default();
        // Partition 0 delivers, partition 1 is stuck at offset 7 with 13 unread.
        for second in 0..STALL_WARNING_AFTER.as_secs() {
            assert_eq!(stalls.observe(0, 50, second as i64, at(second)), None);
            assert_eq!(stalls.observe(1, 13, 7, at(second)), None);
        }
        let stalled = STALL_WARNING_AFTER;
        assert_eq!(
            stalls.observe(1, 13, 7, start + stalled),
            Some(StallChange::Stalled { unread: 13, position: 7, stalled })
        );
        assert_eq!(stalls.observe(1, 13, 7, start + stalled * 3), None, "once");
        assert_eq!(
            stalls.observe(1, 12, 8, start + stalled * 4),
            Some(StallChange::Moving { stalled: stalled * 4 })
        );
        assert_eq!(stalls.observe(1, 12, 8, start + stalled * 5 - Duration::from_secs(1)), None);
        // Nothing unread is no stall, however long the position stays.
        for second in 0..100 {
            assert_eq!(stalls.observe(2, 0, 40, at(second)), None);
        }
        // A partition revoked and assigned again starts afresh.
        assert_eq!(stalls.observe_all(&[(0, 50, 60)], true, start + stalled * 8), vec![]);
        let assigned_again = start + stalled * 8 + Duration::from_secs(1);
        assert_eq!(stalls.observe_all(&[(0, 50, 60), (1, 12, 8)], true, assigned_again), vec![]);
        // While no broker is reachable, no partition is called stalled, and a stall counts
        // from when one is back.
        let down = start + stalled * 20;
        assert_eq!(stalls.observe_all(&[(0, 50, 60), (1, 12, 8)], false, down), vec![]);
        let back = down + stalled * 5;
        assert_eq!(stalls.observe_all(&[(0, 50, 60), (1, 12, 8)], true, back), vec![]);
        assert_eq!(
            stalls.observe_all(&[(0, 50, 60), (1, 12, 8)], true, back + stalled),
            vec![
                (0, StallChange::Stalled { unread: 50, position: 60, stalled }),
                (1, StallChange::Stalled { unread: 12, position: 8, stalled })
            ]
        );
    }

    #[test]
    fn event_time_is_the_least_advanced_partitions_until_it_goes_idle() {
        let start = Instant::now();
        let mut ledger = Ledger { idle_timeout: Duration::from_secs(60), ..Ledger::default() };
        assert_eq!(ledger.event_time(start), None, "no partition");
        ledger.assign(&[0, 1]);
        ledger.heard(0, Some(5_000), start);
        ledger.read = 3;
        assert_eq!(ledger.event_time(start), Some(i64::MIN), "partition 1 has said nothing yet");
        ledger.heard(1, Some(2_000), start);
        ledger.heard(1, None, start);
        assert_eq!(ledger.event_time(start), Some(2_000));
        ledger.note_event_time(start);
        // A minute later, partition 0 speaks again and partition 1 has gone idle.
        let later = start + Duration::from_secs(61);
        ledger.heard(0, Some(7_000), later);
        ledger.read = 5;
        assert_eq!(ledger.event_time(later), Some(7_000));
        ledger.note_event_time(later);
        // Both idle: the most advanced one's.
        assert_eq!(ledger.event_time(later + Duration::from_secs(61)), Some(7_000));
        // What applies depends on the records taken in; it moves forward only.
        assert_eq!(ledger.event_time_at(2), Some(i64::MIN));
        assert_eq!(ledger.event_time_at(4), Some(2_000));
        assert_eq!(ledger.event_time_at(5), Some(7_000));
        ledger.revoke(&[0, 1]);
        assert_eq!(ledger.event_time_at(5), None, "nothing assigned");
    }
}
