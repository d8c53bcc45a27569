//! `rulehost run` as a Kafka consumer group member, against a real Kafka-protocol broker:
//! tansu with its SQLite storage, installed by `make tansu` and started on a loopback port
//! for each test. Its in-memory storage only where SQLite cannot serve, or for its fault:
//! a fetch there starts at the first batch whose base offset is at or past the offset asked
//! for, so a consumer that resumes from an offset inside a producer's batch gets nothing of
//! that batch (Kafka returns the batch that holds the offset).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;

use crate::util::{LocalService, command, workspace};

/// Soft Cell's rule id.
const SOFT_CELL: &str = "fa2f7d8a-6726-465a-aa72-6f6e3d4c99d7";

/// The broker binary: `RULEHOST_TEST_TANSU`, else the one `make tansu` installs.
fn tansu_binary() -> PathBuf {
    let path = std::env::var_os("RULEHOST_TEST_TANSU")
        .map_or_else(|| workspace().join("target/tools/tansu-0.6.0-libsql/bin/tansu"), PathBuf::from);
    assert!(path.exists(), "{} is not installed: `make tansu` installs it", path.display());
    path
}

/// A tansu broker on a free loopback port, storing in a SQLite file that outlives a
/// restart, or in memory.
struct Broker {
    service: LocalService,
    /// The SQLite database's directory, if it stores there.
    stored: Option<tempfile::TempDir>,
    /// No CPU-heavy test runs beside a broker (`util::timely`); dropped last.
    _timely: std::sync::RwLockReadGuard<'static, ()>,
}

impl Broker {
    /// A broker whose topics, messages and committed offsets survive its restart.
    fn start() -> Self {
        Self::start_in(Some(tempfile::tempdir().unwrap()))
    }

    /// A broker storing in memory, where a test needs what tansu's SQLite storage lacks
    /// (it drops the connection that fetches a snappy-compressed batch); no consumer there
    /// may resume inside a batch.
    fn start_in_memory() -> Self {
        Self::start_in(None)
    }

    fn start_in(stored: Option<tempfile::TempDir>) -> Self {
        let _timely = crate::util::timely();
        let mut broker = Broker { service: LocalService::on_free_port(), stored, _timely };
        broker.restart();
        broker
    }

    /// `127.0.0.1:PORT`.
    fn address(&self) -> &str {
        &self.service.address
    }

    /// Starts it (again) on its address.
    fn restart(&mut self) {
        let address = self.address().to_owned();
        let mut command = Command::new(tansu_binary());
        match &self.stored {
            Some(dir) => {
                command.current_dir(dir.path()).args(["broker", "--storage-engine", "sqlite://tansu.db"])
            }
            None => command.args(["broker", "--storage-engine", "memory://tansu/"]),
        };
        command
            .args(["--listener-url", &format!("tcp://{address}")])
            .args(["--advertised-listener-url", &format!("tcp://{address}")])
            .env("RUST_LOG", "warn");
        self.service.start(command, "tansu");
    }

    /// Kills it, as a machine that goes away.
    fn kill(&mut self) {
        self.service.stop();
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.address());
        config
    }

    fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let results = runtime
            .block_on(admin.create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            ))
            .unwrap();
        for result in results {
            result.unwrap();
        }
    }

    /// Produces `messages` (key, payload), partitioned by key, and waits for their
    /// acknowledgement.
    fn produce(&self, topic: &str, messages: &[(String, Vec<u8>)]) {
        self.produce_to(topic, messages, |_| None);
    }

    /// The same, each message to the partition `partition` gives it (by its index), if any.
    fn produce_to(
        &self,
        topic: &str,
        messages: &[(String, Vec<u8>)],
        partition: impl Fn(usize) -> Option<i32>,
    ) {
        // Messages up to 8 MB: a test may produce one larger than a sink's message.
        let producer: ThreadedProducer<DefaultProducerContext> =
            self.config().set("acks", "all").set("message.max.bytes", "8000000").create().unwrap();
        for (n, (key, payload)) in messages.iter().enumerate() {
            let mut record = BaseRecord::to(topic).key(key).payload(payload);
            if let Some(partition) = partition(n) {
                record = record.partition(partition);
            }
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Every message of `topic`, from its start: at least `count`, and whatever else comes
    /// within two seconds after them.
    fn consume(&self, topic: &str, count: usize) -> Vec<(String, Value)> {
        static READERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let group = format!("test-reader-{}", READERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let consumer: BaseConsumer =
            self.config().set("group.id", &group).set("auto.offset.reset", "earliest").create().unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut enough: Option<Instant> = None;
        while Instant::now() < deadline && enough.is_none_or(|at| at.elapsed() < Duration::from_secs(2)) {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                out.push((key, serde_json::from_slice(message.payload().unwrap()).unwrap()));
            }
            if out.len() >= count && enough.is_none() {
                enough = Some(Instant::now());
            }
        }
        assert!(out.len() >= count, "{} of {count} messages read back from {topic}", out.len());
        out
    }
}

/// Defender streaming records for `devices` web servers, `per_device` each over one hour:
/// every other one a reconnaissance command under w3wp.exe (a Soft Cell match).
fn streaming_records(devices: usize, per_device: usize) -> Vec<(String, Value)> {
    let template: Value =
        serde_json::from_str(crate::util::read_data("defender-rows.jsonl").lines().next().unwrap()).unwrap();
    let mut out = Vec::new();
    for device in 0..devices {
        let name = format!("web{device:02}.contoso.com");
        for n in 0..per_device {
            let mut row = template.clone();
            let time = format!("2024-05-01T10:{:02}:{:02}Z", n % 60, device % 60);
            row["Timestamp"] = time.clone().into();
            row["ProcessCreationTime"] = time.clone().into();
            row["DeviceName"] = name.clone().into();
            row["DeviceId"] = format!("{device:040x}").into();
            row["ReportId"] = (device * 10_000 + n).into();
            row["ProcessId"] = (5000 + n).into();
            row["ProcessCommandLine"] =
                if n % 2 == 0 { "cmd.exe /c whoami /all" } else { "cmd.exe /c dir c:\\inetpub" }.into();
            let record = serde_json::json!({
                "time": time,
                "category": "AdvancedHunting-DeviceProcessEvents",
                "operationName": "Publish",
                "properties": row,
            });
            out.push((name.clone(), record));
        }
    }
    out
}

/// The records as messages of the streaming API (`{"records": [..]}`, 1 to 4 records),
/// keyed by device.
fn messages(records: &[(String, Value)]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut size = 1;
    while at < records.len() {
        let device = &records[at].0;
        let end = (at + size).min(records.len());
        let end = at + records[at..end].iter().take_while(|(d, _)| d == device).count();
        let batch: Vec<&Value> = records[at..end].iter().map(|(_, r)| r).collect();
        out.push((device.clone(), serde_json::to_vec(&serde_json::json!({ "records": batch })).unwrap()));
        at = end;
        size = size % 4 + 1;
    }
    out
}

/// `rulehost eval` over the same records, written as streaming records one per line.
fn eval_alerts(records: &[(String, Value)]) -> Vec<Value> {
    let file = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
    let text: String = records.iter().map(|(_, r)| format!("{r}\n")).collect();
    std::fs::write(file.path(), text).unwrap();
    let run = crate::util::rulehost(&["eval", "--window", "1h", &file.path().display().to_string()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    sorted(run.json_lines())
}

/// A member's output, a JSON document per line.
fn documents(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn sorted(mut alerts: Vec<Value>) -> Vec<Value> {
    for alert in &mut alerts {
        if let Some(object) = alert.as_object_mut() {
            object.remove("AlertId");
        }
    }
    alerts.sort_by_key(|a| a.to_string());
    alerts
}

/// A rules directory holding Soft Cell and copies of the `rules` files (Sigma rules).
fn rules_dir(rules: &[PathBuf]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("soft-cell.wasm"), rulehost::rules::BUNDLED_SOFT_CELL).unwrap();
    for rule in rules {
        std::fs::copy(rule, dir.path().join(rule.file_name().unwrap())).unwrap();
    }
    dir
}

/// A consumer: `rulehost run --source kafka://...`, its stderr lines as they come.
struct Member {
    child: Child,
    /// Its rules directory, watched.
    rules: tempfile::TempDir,
    lines: Receiver<String>,
    seen: Vec<String>,
    /// Its stdout, line by line as written.
    out: Receiver<String>,
}

impl Member {
    fn start(broker: &Broker, topic: &str, group: &str, extra: &[&str]) -> Self {
        Self::start_with_rules(broker, topic, group, extra, &[])
    }

    /// A member that runs Soft Cell and the `rules` files (Sigma rules) beside it.
    fn start_with_rules(
        broker: &Broker,
        topic: &str,
        group: &str,
        extra: &[&str],
        rules: &[PathBuf],
    ) -> Self {
        let rules = rules_dir(rules);
        // Windows stay open until the end unless the test says otherwise.
        let lateness: &[&str] =
            if extra.contains(&"--allowed-lateness") { &[] } else { &["--allowed-lateness", "24h"] };
        let mut child = command()
            .env("RULEHOST_LOG", "info")
            .args(["run", "--rules", &rules.path().display().to_string()])
            .args(["--source", &format!("kafka://{}/{topic}", broker.address()), "--group", group])
            .args(["--window", "1h", "--stats-interval", "1"])
            .args(lateness)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = line_by_line(child.stderr.take().unwrap());
        let out = line_by_line(child.stdout.take().unwrap());
        Member { child, rules, lines, seen: Vec::new(), out }
    }

    /// What it wrote to stdout so far.
    fn written(&self) -> Vec<String> {
        self.out.try_iter().collect()
    }

    /// Takes in the lines written since last asked.
    fn read_log(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Waits (a minute at most) until a line of its log is `wanted`, described by `what`.
    fn wait_for_log(&mut self, wanted: impl Fn(&str) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.read_log();
            if self.seen.iter().any(|l| wanted(l)) {
                return;
            }
            assert!(Instant::now() < deadline, "no {what} in the log: {:?}", self.seen);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The events evaluated so far, by Soft Cell's latest counters (every member runs it
    /// from the start; a rule added later counts only what came after it).
    fn evaluated(&mut self) -> u64 {
        self.read_log();
        self.seen
            .iter()
            .rev()
            .find(|l| l.contains(&format!("stats so far: rule {SOFT_CELL}")))
            .and_then(|l| l.rsplit_once("): "))
            .and_then(|(_, counts)| counts.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// The partitions of the member's last rebalance, if it assigned it some (or none).
    fn assignment(&mut self) -> Option<Vec<String>> {
        self.read_log();
        let line = self.seen.iter().rev().find(|l| l.contains("rebalance: partitions"))?;
        let list = line.split_once(" partitions=").map_or("", |(_, list)| list);
        line.contains("partitions assigned")
            .then(|| list.split(", ").filter(|p| !p.is_empty()).map(str::to_owned).collect())
    }

    /// From the source's counters reported since the member's last rebalance: its
    /// partitions, and the messages in them it has not read yet.
    fn lag(&mut self) -> Option<(usize, u64)> {
        self.read_log();
        let since = self.seen.iter().rposition(|l| l.contains("rebalance: partitions"))?;
        let report = self.seen[since..].iter().rev().find(|l| l.contains("stats so far: kafka"))?;
        let number_before = |what: &str| -> Option<u64> {
            report.split(what).next()?.rsplit(' ').find(|w| !w.is_empty())?.parse().ok()
        };
        Some((number_before(" partitions assigned")? as usize, number_before(" unread")?))
    }

    /// Stops it with SIGTERM; its stdout.
    fn stop(mut self) -> (String, Vec<String>) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        assert!(self.child.wait().unwrap().success());
        // Every line, until the reading thread ends at the end of the output.
        let out: String = self.out.iter().map(|l| l + "\n").collect();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        (out, std::mem::take(&mut self.seen))
    }
}

/// A member a failed test leaves behind is killed, not left consuming.
impl Drop for Member {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The lines of `stream`, read on a thread of their own.
fn line_by_line(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    lines
}

/// Waits until `members` together have evaluated `events`.
fn wait_for_events(members: &mut [Member], events: u64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let total: u64 = members.iter_mut().map(Member::evaluated).sum();
        if total >= events {
            return;
        }
        if Instant::now() >= deadline {
            panic!("{total} of {events} events evaluated; the members' logs: {}", logs_of(members));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The members' logs but for the rules' counters, for a wait that failed.
fn logs_of(members: &[Member]) -> String {
    let logs: Vec<Vec<&String>> = members
        .iter()
        .map(|m| m.seen.iter().filter(|l| !l.contains("stats so far: rule")).collect())
        .collect();
    format!("{logs:#?}")
}

/// Waits until the last rebalance of every member assigned it partitions, together each of
/// the topic's `partitions` once.
fn wait_for_assignment(members: &mut [Member], partitions: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let assigned: Option<Vec<Vec<String>>> = members.iter_mut().map(Member::assignment).collect();
        if let Some(assigned) = &assigned {
            let mut all = assigned.concat();
            all.sort();
            all.dedup();
            if all.len() == partitions && assigned.iter().map(Vec::len).sum::<usize>() == partitions {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no stable assignment: {assigned:?}; the members' logs: {}",
            logs_of(members)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the members, whose assignment is stable, have read every message of their
/// partitions and evaluated them: the counters since their last rebalance say that all
/// `partitions` are theirs and none has a message unread, and nothing changes for 3 s.
fn wait_until_caught_up(members: &mut [Member], partitions: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last: Option<(Vec<u64>, Instant)> = None;
    loop {
        let lags: Vec<Option<(usize, u64)>> = members.iter_mut().map(Member::lag).collect();
        let evaluated: Vec<u64> = members.iter_mut().map(Member::evaluated).collect();
        let read_all = lags.iter().all(|l| matches!(l, Some((_, 0))))
            && lags.iter().flatten().map(|l| l.0).sum::<usize>() == partitions;
        match &last {
            Some((counts, since)) if read_all && *counts == evaluated => {
                if since.elapsed() >= Duration::from_secs(3) {
                    return;
                }
            }
            _ => last = read_all.then(|| (evaluated.clone(), Instant::now())),
        }
        assert!(
            Instant::now() < deadline,
            "not caught up: {lags:?}, {evaluated:?}; the members' logs: {}",
            logs_of(members)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn one_consumer_and_a_group_of_three_give_the_alerts_of_eval_and_bad_messages_are_reported() {
    let broker = Broker::start();
    let topic = "process-events";
    broker.create_topic(topic, 6);
    let records = streaming_records(12, 40);
    let expected = eval_alerts(&records);
    assert!(expected.len() >= 12, "{expected:?}");
    let mut batch = messages(&records);
    // Bad messages among them: not JSON, JSON of no known shape.
    batch.insert(3, ("web00.contoso.com".into(), b"not json at all".to_vec()));
    batch.insert(10, ("web01.contoso.com".into(), br#"{"unknown": 1}"#.to_vec()));
    broker.produce(topic, &batch);
    let events = records.len() as u64;

    let mut one = vec![Member::start(&broker, topic, "one", &[])];
    wait_for_events(&mut one, events);
    let (out, log) = one.pop().unwrap().stop();
    let alerts = documents(&out);
    assert_eq!(sorted(alerts), expected);
    // The source's counters at exit: every message read, offsets committed.
    let report = log
        .iter()
        .find(|l| l.contains(&format!("stats at exit: kafka {topic}:")))
        .expect("the source's counters");
    assert!(report.contains(&format!(" {} messages read", batch.len())), "{report}");
    assert!(!report.contains(" 0 commits"), "{report}");
    assert!(!log.iter().any(|l| l.contains("several partitions")), "keyed by device: {log:?}");
    let rejected: Vec<&String> = log.iter().filter(|l| l.contains("record rejected")).collect();
    assert_eq!(rejected.len(), 2, "{log:?}");
    assert!(rejected.iter().all(|l| l.contains(&format!("{topic}/"))), "{rejected:?}");

    // Three members of another group, once the group has settled: the union of their
    // alerts is the same.
    let mut three: Vec<Member> = (0..3).map(|_| Member::start(&broker, topic, "three", &[])).collect();
    wait_for_assignment(&mut three, 6);
    wait_until_caught_up(&mut three, 6);
    let mut union = Vec::new();
    for member in three {
        let (out, _) = member.stop();
        union.extend(documents(&out));
    }
    let mut union = sorted(union);
    union.dedup();
    assert_eq!(union, expected);

    // The first group committed everything: started again, it has nothing to do.
    let mut again = vec![Member::start(&broker, topic, "one", &[])];
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(again[0].evaluated(), 0);
    let (out, _) = again.pop().unwrap().stop();
    assert_eq!(out, "");
}

/// A topic of one partition holding 20 records, one a message, produced together (the
/// producer makes them one batch), and a group "resume" that has settled the first 7.
fn one_batch_settled_up_to_offset_7(broker: &Broker, topic: &str) {
    broker.create_topic(topic, 1);
    let records = streaming_records(1, 20);
    let batch: Vec<(String, Vec<u8>)> =
        records.iter().map(|(key, record)| (key.clone(), serde_json::to_vec(record).unwrap())).collect();
    broker.produce(topic, &batch);
    let committer: BaseConsumer = broker.config().set("group.id", "resume").create().unwrap();
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets.add_partition_offset(topic, 0, rdkafka::Offset::Offset(7)).unwrap();
    committer.commit(&offsets, rdkafka::consumer::CommitMode::Sync).unwrap();
}

/// A group resumes where its offsets were committed, even in the middle of a producer's
/// batch (a member commits after each message it settled, whatever batch it came in):
/// the member reads the rest of that batch, not the next one.
#[test]
fn a_group_resumes_from_an_offset_committed_in_the_middle_of_a_producers_batch() {
    let broker = Broker::start();
    let topic = "one-batch";
    one_batch_settled_up_to_offset_7(&broker, topic);
    let mut member = vec![Member::start(&broker, topic, "resume", &[])];
    wait_for_events(&mut member, 13);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(member[0].evaluated(), 13, "read from offset 7 on, once");
    let (_, log) = member.pop().unwrap().stop();
    let report =
        log.iter().find(|l| l.contains(&format!("stats at exit: kafka {topic}:"))).expect("counters");
    assert!(report.contains(" 13 messages read"), "{report}");
}

/// A partition whose messages the broker does not deliver, though the member keeps asking,
/// is warned of by name. tansu's in-memory storage is such a broker for an offset inside a
/// batch (see the module's note).
#[test]
fn a_partition_whose_messages_do_not_come_is_warned_of() {
    let broker = Broker::start_in_memory();
    let topic = "one-batch";
    one_batch_settled_up_to_offset_7(&broker, topic);
    let mut member = Member::start(&broker, topic, "resume", &[]);
    member.wait_for_log(
        |l| {
            l.contains("13 messages unread from offset 7, and none has come for 30 s")
                && l.contains("partition=0")
        },
        "the warning of a stalled partition",
    );
    assert_eq!(member.evaluated(), 0);
    member.stop();
}

#[test]
fn partitions_taken_away_in_a_rebalance_leave_their_windows_to_their_new_owner() {
    let broker = Broker::start();
    broker.create_topic("events", 6);
    let records = streaming_records(12, 40);
    let expected = eval_alerts(&records);
    broker.produce("events", &messages(&records));
    // A member reads every event; its windows stay open (24 h of allowed lateness).
    let mut members = vec![Member::start(&broker, "events", "moving", &[])];
    wait_for_events(&mut members, records.len() as u64);
    // A second member joins: the rebalance takes partitions from the first, whose matches
    // of them must go with them rather than be written as complete alerts at its stop.
    members.push(Member::start(&broker, "events", "moving", &[]));
    wait_for_assignment(&mut members, 6);
    wait_until_caught_up(&mut members, 6);
    let mut outputs = Vec::new();
    for (n, member) in members.into_iter().enumerate() {
        let (out, log) = member.stop();
        if n == 0 {
            assert!(log.iter().any(|l| l.contains("partitions revoked")), "{log:?}");
        }
        outputs.push(sorted(documents(&out)));
    }
    assert!(outputs.iter().all(|o| !o.is_empty()), "each member keeps some partitions: {outputs:?}");
    // Each alert once, by the member that owns its device's partition now, and complete.
    let all = sorted(outputs.concat());
    let mut distinct = all.clone();
    distinct.dedup();
    assert_eq!(all.len(), distinct.len(), "an alert written by both members");
    assert_eq!(all, expected);
}

/// Device `device`'s record (of [`streaming_records`]) moved to `time`.
fn at_time(records: &[(String, Value)], device: &str, time: &str) -> (String, Value) {
    let (name, record) = records.iter().find(|(d, _)| d == device).unwrap();
    let mut record = record.clone();
    record["time"] = time.into();
    record["properties"]["Timestamp"] = time.into();
    record["properties"]["ProcessCreationTime"] = time.into();
    record["properties"]["ReportId"] = 999_999.into();
    (name.clone(), record)
}

/// Produces `records` to `partition`.
fn produce_records(broker: &Broker, topic: &str, records: &[(String, Value)], partition: i32) {
    broker.produce_to(topic, &messages(records), |_| Some(partition));
}

#[test]
fn a_partition_behind_the_others_holds_their_windows_open() {
    let broker = Broker::start();
    broker.create_topic("events", 2);
    let records = streaming_records(2, 40);
    let (web00, web01): (Vec<_>, Vec<_>) =
        records.iter().cloned().partition(|(d, _)| d == "web00.contoso.com");
    // web00 (partition 0) reaches 12:30, past the 10:00 window and its 5 minutes of
    // lateness; web01 (partition 1) is behind: its first events come now, the rest later.
    let mut ahead = web00.clone();
    ahead.push(at_time(&records, "web00.contoso.com", "2024-05-01T12:30:00Z"));
    let expected = eval_alerts(&[&ahead[..], &web01[..]].concat());
    produce_records(&broker, "events", &web01[..5], 1);
    produce_records(&broker, "events", &ahead, 0);
    let mut member = vec![Member::start(&broker, "events", "behind", &["--allowed-lateness", "5m"])];
    wait_for_events(&mut member, (ahead.len() + 5) as u64);
    produce_records(&broker, "events", &web01[5..], 1);
    wait_for_events(&mut member, (ahead.len() + web01.len()) as u64);
    let (out, log) = member.pop().unwrap().stop();
    // The 10:00 window waited for web01: one alert of all its events, none late.
    let alerts = documents(&out);
    assert_eq!(sorted(alerts), expected);
    assert!(!log.iter().any(|l| l.contains("late event")), "{log:?}");
    assert!(log.last().unwrap().ends_with(" 0 late, 0 ahead of the clock"), "{log:?}");
}

#[test]
fn a_partition_idle_for_the_idle_timeout_no_longer_holds_windows_open() {
    let broker = Broker::start();
    broker.create_topic("events", 2);
    let mut records = streaming_records(1, 40);
    records.push(at_time(&records, "web00.contoso.com", "2024-05-01T12:30:00Z"));
    let expected = eval_alerts(&records);
    produce_records(&broker, "events", &records, 0);
    // Partition 1 never delivers anything: after 2 s it is idle, and the 10:00 window
    // closes while the member runs.
    let member =
        Member::start(&broker, "events", "idle", &["--allowed-lateness", "5m", "--idle-timeout", "2s"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut written = Vec::new();
    while written.is_empty() {
        assert!(Instant::now() < deadline, "no alert while running");
        std::thread::sleep(Duration::from_millis(200));
        written = member.written();
    }
    assert_eq!(sorted(documents(&written[0])), expected[..1]);
    let (out, _) = member.stop();
    let all = documents(&(written.join("\n") + "\n" + &out));
    assert_eq!(sorted(all), expected);
}

#[test]
fn a_broker_that_goes_away_and_comes_back_is_waited_for_and_nothing_is_lost() {
    let mut broker = Broker::start();
    broker.create_topic("events", 3);
    let records = streaming_records(6, 40);
    let expected = eval_alerts(&records);
    // Each device's first 20 events before the broker goes away, the rest after.
    let (before, after): (Vec<_>, Vec<_>) =
        records.iter().cloned().enumerate().partition(|(n, _)| n % 40 < 20);
    let strip =
        |records: Vec<(usize, (String, Value))>| records.into_iter().map(|(_, r)| r).collect::<Vec<_>>();
    let (before, after) = (strip(before), strip(after));
    broker.produce("events", &messages(&before));
    let mut member = Member::start(&broker, "events", "steady", &[]);
    wait_for_events(std::slice::from_mut(&mut member), before.len() as u64);
    broker.kill();
    // The member waits, and says so.
    member.wait_for_log(|l| l.contains("broker unreachable, waiting"), "a report of the broker gone");
    std::thread::sleep(Duration::from_secs(2));
    broker.restart();
    broker.produce("events", &messages(&after));
    wait_for_events(std::slice::from_mut(&mut member), records.len() as u64);
    wait_until_caught_up(std::slice::from_mut(&mut member), 3);
    let (out, log) = member.stop();
    assert!(log.iter().any(|l| l.contains("broker reachable again")), "{log:?}");
    let alerts = documents(&out);
    assert_eq!(sorted(alerts), expected);
    // What it settled at its stop is committed: the group, started again, has nothing to do.
    let mut again = Member::start(&broker, "events", "steady", &[]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(again.evaluated(), 0);
    assert_eq!(again.stop().0, "");
}

/// Every record of the shared logs as a producer would send it, one JSON document per
/// message keyed by its computer: the OTRF datasets' lines, and the EVTX files' records as
/// evtx_dump renders them.
fn real_records(scratch: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut lines: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(crate::util::shared("otrf")).unwrap() {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(entry.unwrap().path()).unwrap()).unwrap();
        for i in 0..archive.len() {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut archive.by_index(i).unwrap(), &mut text).unwrap();
            lines.extend(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned));
        }
    }
    for (_, jsonl) in crate::windows::shared_evtx_rendered(scratch, false) {
        lines.extend(std::fs::read_to_string(jsonl).unwrap().lines().map(str::to_owned));
    }
    lines
        .into_iter()
        .map(|line| {
            let record: Value = serde_json::from_str(&line).unwrap();
            let computer = ["/Hostname", "/Computer", "/Event/System/Computer"]
                .iter()
                .find_map(|p| record.pointer(p).and_then(Value::as_str))
                .unwrap_or("unknown")
                .to_owned();
            (computer, line.into_bytes())
        })
        .collect()
}

#[test]
fn real_records_through_a_topic_give_the_alerts_of_eval() {
    let scratch = tempfile::tempdir().unwrap();
    let messages = real_records(scratch.path());
    assert!(messages.len() > 3_000, "{}", messages.len());
    let sigma: Vec<PathBuf> = std::fs::read_dir(crate::util::shared("sigma"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    assert_eq!(sigma.len(), 10);
    // eval over the same documents from a file, with the same rules.
    let rules = rules_dir(&sigma);
    let file = scratch.path().join("records.jsonl");
    let text: Vec<u8> = messages.iter().flat_map(|(_, m)| m.iter().copied().chain([b'\n'])).collect();
    std::fs::write(&file, text).unwrap();
    let eval = crate::util::rulehost(&[
        "eval",
        "--window",
        "1h",
        "--rules",
        &rules.path().display().to_string(),
        &file.display().to_string(),
    ]);
    assert_eq!(eval.code, 0, "{}", eval.stderr);
    let expected = sorted(eval.json_lines());
    assert!(expected.len() >= 5, "{expected:?}");

    let broker = Broker::start();
    broker.create_topic("windows", 4);
    broker.produce("windows", &messages);
    let mut member = vec![Member::start_with_rules(&broker, "windows", "real", &[], &sigma)];
    wait_for_events(&mut member, eval.counts().1);
    wait_until_caught_up(&mut member, 4);
    let (out, log) = member.pop().unwrap().stop();
    assert!(!log.iter().any(|l| l.contains("record rejected")), "{log:?}");
    let alerts = documents(&out);
    assert_eq!(sorted(alerts), expected);
}

#[test]
fn a_rule_added_while_a_member_runs_evaluates_the_messages_after_it() {
    let broker = Broker::start();
    broker.create_topic("events", 3);
    let records = streaming_records(4, 20);
    let (first, second) = records.split_at(40);
    broker.produce("events", &messages(first));
    let mut member = Member::start(&broker, "events", "swap", &["--matches"]);
    wait_for_events(std::slice::from_mut(&mut member), first.len() as u64);
    // A rule added to the watched directory: loaded between two batches, it evaluates what
    // comes after, as with any other source.
    std::fs::copy(crate::util::test_rule("match-all"), member.rules.path().join("match-all.wasm")).unwrap();
    member.wait_for_log(|l| l.contains("rule loaded") && l.contains("test-match-all"), "the rule loaded");
    broker.produce("events", &messages(second));
    wait_for_events(std::slice::from_mut(&mut member), records.len() as u64);
    let (out, _) = member.stop();
    let matches = documents(&out);
    let by = |rule: &str| matches.iter().filter(|m| m["rule"] == rule).count();
    assert_eq!(by("test-match-all"), second.len(), "{matches:?}");
    // Soft Cell saw all of them: every other command is a reconnaissance one.
    assert_eq!(by(SOFT_CELL), records.len() / 2);
}

#[test]
fn alerts_go_to_a_topic_keyed_by_an_id_that_a_restart_gives_again() {
    let broker = Broker::start();
    broker.create_topic("events", 3);
    broker.create_topic("alerts", 1);
    let records = streaming_records(4, 10);
    let expected = eval_alerts(&records);
    broker.produce("events", &messages(&records));
    let sink = format!("kafka://{}/alerts", broker.address());
    let mut member = vec![Member::start(&broker, "events", "sink", &["--sink", &sink])];
    wait_for_events(&mut member, records.len() as u64);
    let (out, _) = member.pop().unwrap().stop();
    assert_eq!(out, "", "alerts go to the topic, not stdout");
    let produced = broker.consume("alerts", expected.len());
    for (key, alert) in &produced {
        assert_eq!(alert["AlertId"].as_str(), Some(key.as_str()));
    }
    assert_eq!(sorted(produced.iter().map(|(_, a)| a.clone()).collect()), expected);
    // Another group reads the same events again: the same ids.
    let mut second = vec![Member::start(&broker, "events", "sink-again", &["--sink", &sink])];
    wait_for_events(&mut second, records.len() as u64);
    second.pop().unwrap().stop();
    let all = broker.consume("alerts", expected.len() * 2);
    let mut keys: Vec<&String> = all.iter().map(|(k, _)| k).collect();
    keys.sort();
    let pairs = keys.chunks(2).filter(|pair| pair[0] == pair[1]).count();
    assert_eq!(pairs, expected.len(), "{keys:?}");
}

#[test]
fn a_member_killed_in_the_middle_and_started_again_loses_no_alert_and_gives_each_id_one_content() {
    let broker = Broker::start();
    broker.create_topic("events", 4);
    broker.create_topic("alerts", 1);
    let records = streaming_records(8, 60);
    let expected = eval_alerts(&records);
    broker.produce("events", &messages(&records));
    let sink = format!("kafka://{}/alerts", broker.address());
    // A short session, so that the broker drops the killed member soon.
    let session = ["--kafka-option", "session.timeout.ms=6000"];
    let mut first = Member::start(
        &broker,
        "events",
        "crash",
        &[&["--sink", &sink, "--batch-size", "16"][..], &session[..]].concat(),
    );
    // Killed once it has evaluated some of the events, without a chance to flush.
    let deadline = Instant::now() + Duration::from_secs(60);
    while first.evaluated() == 0 {
        assert!(Instant::now() < deadline, "nothing evaluated");
        std::thread::sleep(Duration::from_millis(50));
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // Started again, the member resumes from the committed offsets; it stops once it has
    // been idle for a while.
    let mut second =
        Member::start(&broker, "events", "crash", &[&["--sink", &sink][..], &session[..]].concat());
    let deadline = Instant::now() + Duration::from_secs(60);
    while second.evaluated() == 0 {
        assert!(Instant::now() < deadline, "the restarted member got nothing: {:?}", second.seen);
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut last = (0, Instant::now());
    while last.1.elapsed() < Duration::from_secs(4) {
        let now = second.evaluated();
        if now != last.0 {
            last = (now, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    second.stop();
    let produced = broker.consume("alerts", expected.len());
    let mut by_id: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    for (key, alert) in &produced {
        if let Some(before) = by_id.insert(key.clone(), alert.clone()) {
            assert_eq!(&before, alert, "one id, two contents");
        }
    }
    assert_eq!(sorted(by_id.into_values().collect()), expected);
}

#[test]
fn a_device_whose_events_come_from_two_partitions_is_warned_of_once() {
    let broker = Broker::start();
    broker.create_topic("split", 2);
    let records = streaming_records(1, 6);
    let batch = messages(&records);
    assert!(batch.len() >= 3, "{}", batch.len());
    // One device's messages to both partitions, as a producer that does not key by device.
    broker.produce_to("split", &batch, |n| Some((n % 2) as i32));
    let mut member = vec![Member::start(&broker, "split", "split", &[])];
    wait_for_events(&mut member, records.len() as u64);
    let (_, log) = member.pop().unwrap().stop();
    let warnings: Vec<&String> = log.iter().filter(|l| l.contains("come from several partitions")).collect();
    assert_eq!(warnings.len(), 1, "{log:?}");
    assert!(warnings[0].contains("web00.contoso.com"), "{}", warnings[0]);
}

/// An alert larger than a message may be (1 MB by default) is cut to fit: its longest lists
/// to their first values, named in `Cut` with how many they had. Refused whole, it ended the
/// run, and the run started again made it again from the committed offsets.
#[test]
fn an_alert_larger_than_a_message_is_cut_to_fit_and_says_what_was_cut() {
    let broker = Broker::start();
    broker.create_topic("events", 1);
    broker.create_topic("alerts", 1);
    // 2,000 matches on one device in one hour, each command line distinct and 600 bytes
    // long: Soft Cell's alert lists every one, 1.2 MB.
    let mut records = streaming_records(1, 2_000);
    for (n, (_, record)) in records.iter_mut().enumerate() {
        record["properties"]["ProcessCommandLine"] =
            format!("cmd.exe /c whoami {n:04} {}", "A".repeat(580)).into();
    }
    let whole = eval_alerts(&records);
    assert_eq!(whole.len(), 1);
    assert!(whole[0].to_string().len() > 1_100_000, "{}", whole[0].to_string().len());
    broker.produce("events", &messages(&records));
    let sink = format!("kafka://{}/alerts", broker.address());
    let mut member = vec![Member::start(&broker, "events", "cut", &["--sink", &sink])];
    wait_for_events(&mut member, records.len() as u64);
    let (_, log) = member.pop().unwrap().stop();
    assert!(log.iter().any(|l| l.contains("cut to") && l.contains("message.max.bytes 1000000")), "{log:?}");
    let produced = broker.consume("alerts", 1);
    assert_eq!(produced.len(), 1);
    let (key, alert) = &produced[0];
    assert_eq!(alert["AlertId"].as_str(), Some(key.as_str()));
    assert!(alert.to_string().len() <= 1_000_000 - 1024, "{}", alert.to_string().len());
    assert_eq!(alert["MatchCount"], 2_000);
    assert_eq!(alert["Cut"], serde_json::json!({ "set_ProcessCommandLine": 2_000 }));
    // What is kept of the cut list is its start; the rest of the alert is whole.
    let kept = alert["set_ProcessCommandLine"].as_array().unwrap();
    let all = whole[0]["set_ProcessCommandLine"].as_array().unwrap();
    assert!(kept.len() >= 500 && kept.len() < all.len(), "{}", kept.len());
    assert_eq!(kept[..], all[..kept.len()]);
    let mut rest = alert.clone();
    for name in ["AlertId", "Cut", "set_ProcessCommandLine"] {
        rest.as_object_mut().unwrap().remove(name);
    }
    let mut whole_rest = whole[0].clone();
    whole_rest.as_object_mut().unwrap().remove("set_ProcessCommandLine");
    assert_eq!(rest, whole_rest);
}

/// A match larger than a message may be (an event of a forged command line of 2 MB, under
/// `--matches`) is cut to fit: its longest values end with the mark of their whole value.
/// Refused whole, it ended the run, and the run started again read the same event again.
#[test]
fn a_match_larger_than_a_message_is_cut_to_fit() {
    let broker = Broker::start();
    broker.create_topic("events", 1);
    broker.create_topic("matches", 1);
    let mut records = streaming_records(1, 6);
    let long = format!("cmd.exe /c whoami {}", "A".repeat(2_000_000));
    records[2].1["properties"]["ProcessCommandLine"] = long.clone().into();
    // Produced one record a message, the long one in a message of its own.
    let messages: Vec<(String, Vec<u8>)> = records
        .iter()
        .map(|(device, record)| {
            (device.clone(), serde_json::to_vec(&serde_json::json!({ "records": [record] })).unwrap())
        })
        .collect();
    broker.produce("events", &messages);
    let sink = format!("kafka://{}/matches", broker.address());
    let mut member = vec![Member::start(&broker, "events", "cut-match", &["--matches", "--sink", &sink])];
    wait_for_events(&mut member, records.len() as u64);
    let (_, log) = member.pop().unwrap().stop();
    assert!(log.iter().any(|l| l.contains("a match of") && l.contains("cut to")), "{log:?}");
    // Soft Cell matches every other record, the long one among them.
    let produced = broker.consume("matches", 3);
    assert_eq!(produced.len(), 3, "{produced:?}");
    let commands: Vec<&str> =
        produced.iter().map(|(_, m)| m["event"]["ProcessCommandLine"].as_str().unwrap()).collect();
    let cut: Vec<&&str> = commands.iter().filter(|c| c.len() > 100).collect();
    assert_eq!(cut.len(), 1, "{commands:?}");
    assert!(cut[0].len() < 1_000_000, "{}", cut[0].len());
    assert!(cut[0].starts_with("cmd.exe /c whoami AAAA"));
    assert!(
        cut[0].ends_with(']') && cut[0].contains(&format!("…[{} bytes, sha256:", long.len())),
        "{}",
        &cut[0][cut[0].len() - 80..]
    );
    assert_eq!(commands.iter().filter(|&&c| c == "cmd.exe /c whoami /all").count(), 2);
    for (_, m) in &produced {
        assert_eq!(m["rule"], "fa2f7d8a-6726-465a-aa72-6f6e3d4c99d7");
        assert!(m["source"].is_object());
    }
}

/// Producers compress their batches: Winlogbeat and Filebeat with gzip by default, Vector
/// and Kafka Connect often with zstd. A batch the client cannot decompress is never passed:
/// its partition stops there.
#[test]
fn messages_compressed_by_their_producer_with_any_codec_kafka_has_are_read() {
    let broker = Broker::start_in_memory();
    let records = streaming_records(2, 20);
    let expected = eval_alerts(&records);
    assert_eq!(expected.len(), 2, "{expected:?}");
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("compressed-{codec}");
        broker.create_topic(&topic, 1);
        let producer: ThreadedProducer<DefaultProducerContext> = broker
            .config()
            .set("acks", "all")
            .set("compression.codec", codec)
            .set("linger.ms", "50")
            .create()
            .unwrap();
        for (key, payload) in messages(&records) {
            producer.send(BaseRecord::to(&topic).key(&key).payload(&payload)).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        let mut member = vec![Member::start(&broker, &topic, codec, &[])];
        wait_for_events(&mut member, records.len() as u64);
        let (out, log) = member.pop().unwrap().stop();
        assert!(!log.iter().any(|l| l.contains("consumer reports")), "{codec}: {log:?}");
        assert_eq!(sorted(documents(&out)), expected, "{codec}");
    }
}

/// librdkafka's log goes to rulehost's log under the target `librdkafka`: off by default
/// (its errors come through the client's error callback, reported once), there when asked.
#[test]
fn librdkafkas_log_is_off_by_default_and_there_when_asked() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let rules = rules_dir(&[]);
    let run = |filter: Option<&str>| {
        let mut command = command();
        command
            .args(["run", "--rules", &rules.path().display().to_string()])
            .args(["--source", &format!("kafka://127.0.0.1:{port}/nowhere"), "--group", "g"])
            .args(["--kafka-option", "debug=broker"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(filter) = filter {
            command.env("RULEHOST_LOG", filter);
        }
        let child = command.spawn().unwrap();
        std::thread::sleep(Duration::from_secs(2));
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stderr).unwrap()
    };
    let quiet = run(None);
    assert!(quiet.contains("broker unreachable"), "{quiet}");
    assert!(!quiet.contains(" librdkafka: "), "{quiet}");
    let asked = run(Some("info,librdkafka=debug"));
    let lines = asked.lines().filter(|l| l.contains(" librdkafka: ") && l.contains("DEBUG")).count();
    assert!(lines >= 5, "{asked}");
}
