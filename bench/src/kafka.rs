//! `BENCH_ONLY=kafka`: events from a Kafka topic into `rulehost run` members of one consumer
//! group, against `rulehost eval` over the same events from a file, in one run; and the
//! latency from produce to match and from a window's end to its alert. The broker is tansu
//! (`make tansu`, in-memory storage, the lightest) on loopback, on the same two cores. That
//! storage skips the rest of a batch a member resumes inside (the README's Kafka notes): a
//! member that joins after another has committed may get none of it, and the bench then
//! fails with "members stalled" rather than time a group that read less. Two inputs: generated
//! Defender streaming records (`{"records": [..]}` messages of 100, keyed by device, every
//! other one a Soft Cell match), and real records (the shared logs, one per message).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;

const PARTITIONS: i32 = 6;

/// The members' options unless `BENCH_KAFKA_OPTIONS` says otherwise: tansu holds every fetch
/// for its whole `fetch.wait.max.ms` even when data is there (Kafka answers as soon as
/// there is), so the source's 50 ms would pace the members by the broker's wait, not by
/// their own work. With small messages (the real records, one per message) that wait was
/// three quarters of the time.
const TANSU_FETCH_WAIT: &str = "fetch.wait.max.ms=5";
const RECORDS_PER_MESSAGE: usize = 100;

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

struct Broker {
    child: Child,
    address: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker() -> Result<Broker> {
    let tansu = workspace().join("target/tools/tansu-0.6.0-libsql/bin/tansu");
    ensure!(tansu.exists(), "{} is missing: `make tansu`", tansu.display());
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let address = format!("127.0.0.1:{port}");
    let child = Command::new(tansu)
        .args(["broker", "--storage-engine", "memory://tansu/"])
        .args([
            "--listener-url",
            &format!("tcp://{address}"),
            "--advertised-listener-url",
            &format!("tcp://{address}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&address).is_err() {
        ensure!(Instant::now() < deadline, "tansu did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Broker { child, address })
}

/// `count` streaming records over 100 devices, as lines and as messages.
fn records(count: usize) -> (String, Vec<(String, Vec<u8>)>) {
    let mut lines = String::new();
    let mut by_device: Vec<Vec<Value>> = vec![Vec::new(); 100];
    for n in 0..count {
        let device = n % 100;
        let time = format!(
            "2024-05-01T{:02}:{:02}:{:02}Z",
            10 + (n / 360_000) % 10,
            (n / 6000) % 60,
            (n / 100) % 60
        );
        let command = if n % 2 == 0 { "cmd.exe /c whoami /all" } else { "cmd.exe /c dir c:\\inetpub" };
        let record = serde_json::json!({
            "time": time, "category": "AdvancedHunting-DeviceProcessEvents", "operationName": "Publish",
            "properties": {
                "Timestamp": time, "DeviceId": format!("{device:040x}"), "DeviceName": format!("web{device:03}.contoso.com"),
                "ActionType": "ProcessCreated", "FileName": "cmd.exe", "FolderPath": "C:\\Windows\\System32\\cmd.exe",
                "ProcessId": 5000 + n % 1000, "ProcessCommandLine": command, "ProcessCreationTime": time,
                "AccountDomain": "iis apppool", "AccountName": "defaultapppool",
                "InitiatingProcessFileName": "w3wp.exe", "InitiatingProcessFolderPath": "c:\\windows\\system32\\inetsrv\\w3wp.exe",
                "InitiatingProcessCommandLine": "w3wp.exe", "InitiatingProcessId": 4032, "InitiatingProcessParentFileName": "svchost.exe",
                "ReportId": n,
            },
        });
        lines.push_str(&record.to_string());
        lines.push('\n');
        by_device[device].push(record);
    }
    let mut messages = Vec::new();
    for (device, records) in by_device.iter().enumerate() {
        for chunk in records.chunks(RECORDS_PER_MESSAGE) {
            let payload = serde_json::to_vec(&serde_json::json!({ "records": chunk })).expect("JSON");
            messages.push((format!("web{device:03}.contoso.com"), payload));
        }
    }
    (lines, messages)
}

/// Members of `group` until together they have evaluated `events`: the events per second
/// from the first partitions assigned to the counter that reaches `events`, and the largest
/// peak RSS of a member. (Timed from the first counter instead, a member that read most of
/// the topic within its first second, its first counter's interval, was timed on its tail.)
fn consume(setup: &Setup, topic: &str, group: &str, members: usize, events: u64) -> Result<(f64, u64)> {
    let (broker, rules) = (&setup.broker, &setup.rules);
    let binary = crate::rulehost_binary();
    let mut children = Vec::new();
    // (member, events so far or `None` for partitions assigned, when)
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Option<u64>, Instant)>();
    for m in 0..members {
        let mut child = Command::new(&binary)
            .args(["run", "--rules", &rules.display().to_string(), "--matches", "-o", "/dev/null"])
            .args(["--source", &format!("kafka://{}/{topic}", broker.address), "--group", group])
            .args(["--stats-interval", "1", "--jobs", "1"])
            .args(member_options().iter().flat_map(|o| ["--kafka-option", o.as_str()]))
            .env("RULEHOST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("BENCH_KAFKA_VERBOSE").is_some() && line.contains("stats so far") {
                    eprintln!("member {m}: {line}");
                }
                if line.contains("partitions assigned") {
                    let _ = tx.send((m, None, Instant::now()));
                }
                if let Some((_, counts)) =
                    line.split_once("stats so far").and_then(|(_, l)| l.rsplit_once("): "))
                    && let Some(n) = counts.split(' ').next().and_then(|n| n.parse().ok())
                {
                    let _ = tx.send((m, Some(n), Instant::now()));
                }
            }
        });
        children.push(child);
    }
    let mut latest = vec![0u64; members];
    let mut assigned: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let result = loop {
        let Ok((m, n, at)) = rx.recv_timeout(Duration::from_secs(5)) else {
            if Instant::now() > deadline {
                break Err(anyhow::anyhow!("members stalled at {latest:?} of {events}"));
            }
            continue;
        };
        let Some(n) = n else {
            assigned.get_or_insert(at);
            continue;
        };
        latest[m] = n;
        let total: u64 = latest.iter().sum();
        if total >= events {
            let Some(since) = assigned else {
                break Err(anyhow::anyhow!("the members counted events before any partition was assigned"));
            };
            let elapsed = at.duration_since(since).as_secs_f64();
            if elapsed < 2.0 {
                break Err(anyhow::anyhow!("too fast to time ({elapsed:.1} s): raise BENCH_KAFKA_EVENTS"));
            }
            break Ok(total as f64 / elapsed);
        }
    };
    let peak = children.iter().filter_map(|c| crate::peak_rss(c.id())).max().unwrap_or(0);
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok((result?, peak))
}

/// `BENCH_ONLY=kafka`.
pub fn group_vs_file() -> Result<()> {
    let count: usize = std::env::var("BENCH_KAFKA_EVENTS").ok().map_or(Ok(600_000), |v| v.parse())?;
    let broker = start_broker()?;
    let dir = tempfile::tempdir()?;
    let (lines, messages) = records(count);
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines)?;
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules)?;
    std::fs::write(rules.join("soft-cell.wasm"), rulehost::rules::BUNDLED_SOFT_CELL)?;

    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &broker.address);
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let setup = Setup { broker, config, runtime, admin, rules };
    for topic in ["one", "two"] {
        setup.create_topic(topic, PARTITIONS)?;
        setup.produce(topic, &messages)?;
    }
    let (elapsed, _) = eval_file(&setup.rules, &file)?;
    let eval_rate = count as f64 / elapsed;
    let real = real_vs_file(&setup, dir.path())?;
    let (one, one_peak) = consume(&setup, "one", "bench-one", 1, count as u64)?;
    let (two, _) = consume(&setup, "two", "bench-two", 2, count as u64)?;
    let latencies = latency(&setup)?;
    let alert_latencies = alert_latency(&setup)?;
    println!();
    println!(
        "| {count} generated Defender records in {} messages, 6 partitions, tansu on the same cores | events/s | ratio |",
        messages.len()
    );
    println!("|---|---|---|");
    println!("| `rulehost eval --matches --jobs 1` over the same records from a file | {eval_rate:.0} | 1 |");
    println!(
        "| `rulehost run --source kafka://` 1 member (--jobs 1) | {one:.0} | {:.2} of eval |",
        one / eval_rate
    );
    println!("| 2 members of one group (--jobs 1 each) | {two:.0} | {:.2}x one member |", two / one);
    println!("| peak RSS of the one member, the whole topic its lag at start | {} MiB | |", one_peak >> 20);
    println!();
    println!(
        "| {} real records (the shared OTRF and EVTX logs, EVTX as evtx_dump renders them) repeated, one per message, 6 partitions | records/s | ratio |",
        real.records
    );
    println!("|---|---|---|");
    println!("| `rulehost eval --matches --jobs 1` over the same lines from a file | {:.0} | 1 |", real.eval);
    println!(
        "| `rulehost run --source kafka://` 1 member (--jobs 1) | {:.0} | {:.2} of eval |",
        real.member,
        real.member / real.eval
    );
    println!(
        "| a consumer that only counts the messages (librdkafka, the members' options) | {:.0} | member at {:.2} of it |",
        real.drain,
        real.member / real.drain
    );
    println!("| peak RSS of that member, the whole topic its lag at start | {} MiB | |", real.peak >> 20);
    println!();
    println!(
        "| produce to match, {LATENCY_RATE} matching events/s for {LATENCY_SECONDS} s, one member, matches to a topic | p50 | p99 | max |"
    );
    println!("|---|---|---|---|");
    let percentiles =
        |l: &[f64]| format!("{:.0} | {:.0} | {:.0}", l[l.len() / 2], l[l.len() * 99 / 100], l[l.len() - 1]);
    println!("| milliseconds | {} |", percentiles(&latencies));
    println!();
    println!(
        "| window end to alert, {LATENCY_RATE} matching events/s stamped as produced, 1 s windows, 1 ms allowed lateness, one member, alerts to a topic | p50 | p99 | max |"
    );
    println!("|---|---|---|---|");
    println!("| milliseconds ({} alerts) | {} |", alert_latencies.len(), percentiles(&alert_latencies));
    Ok(())
}

/// The broker, its clients and the rules every measurement here uses.
struct Setup {
    broker: Broker,
    config: ClientConfig,
    runtime: tokio::runtime::Runtime,
    admin: AdminClient<DefaultClientContext>,
    /// A rules directory holding Soft Cell.
    rules: PathBuf,
}

impl Setup {
    fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        for result in self.runtime.block_on(self.admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))? {
            if let Err((name, e)) = result {
                bail!("creating {name}: {e}");
            }
        }
        Ok(())
    }

    /// Produces `messages` (key, payload) and waits for their acknowledgement.
    fn produce(&self, topic: &str, messages: &[(String, Vec<u8>)]) -> Result<()> {
        let producer: ThreadedProducer<DefaultProducerContext> =
            self.config.clone().set("linger.ms", "20").create()?;
        for (key, payload) in messages {
            while let Err((e, _)) = producer.send(BaseRecord::to(topic).key(key).payload(payload)) {
                if !matches!(
                    e,
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull
                    )
                ) {
                    bail!("producing: {e}");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        producer.flush(Duration::from_secs(120))?;
        Ok(())
    }
}

/// `rulehost eval --matches --jobs 1` over `file` with `rules`, output thrown away: its
/// wall time in seconds, and its stderr (the summary).
fn eval_file(rules: &Path, file: &Path) -> Result<(f64, String)> {
    let started = Instant::now();
    let eval = Command::new(crate::rulehost_binary())
        .args(["eval", "--matches", "--jobs", "1", "-o", "/dev/null", "--rules"])
        .arg(rules)
        .arg(file)
        .output()?;
    let elapsed = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&eval.stderr).into_owned();
    ensure!(eval.status.success(), "eval: {stderr}");
    Ok((elapsed, stderr))
}

/// Real records through a topic against the same lines from a file, in records per second.
struct RealRates {
    records: usize,
    eval: f64,
    member: f64,
    /// The member's peak RSS.
    peak: u64,
    /// Messages per second that a consumer which only counts them takes from the topic.
    drain: f64,
}

/// The options the members are given (`BENCH_KAFKA_OPTIONS`, else the fetch wait for tansu).
fn member_options() -> Vec<String> {
    std::env::var("BENCH_KAFKA_OPTIONS")
        .unwrap_or_else(|_| TANSU_FETCH_WAIT.to_owned())
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Messages per second between the first and the last of `count` messages that a consumer
/// doing nothing with them (librdkafka with the members' options) takes from `topic`: what
/// the broker and the client deliver, the ceiling of any member.
fn drain(setup: &Setup, topic: &str, count: usize) -> Result<f64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut config = setup.config.clone();
    config.set("group.id", format!("{topic}-drain")).set("auto.offset.reset", "earliest");
    for option in member_options() {
        let (key, value) = option.split_once('=').with_context(|| format!("option {option}: no ="))?;
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    let (mut taken, mut first, mut last) = (0usize, None, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(600);
    while taken < count {
        ensure!(Instant::now() < deadline, "drained {taken} of {count} messages of {topic}");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                taken += 1;
                last = Instant::now();
                first.get_or_insert(last);
            }
            Some(Err(e)) => bail!("draining {topic}: {e}"),
            None => {}
        }
    }
    let elapsed = last.duration_since(first.expect("a message was taken")).as_secs_f64();
    Ok((count - 1) as f64 / elapsed)
}

/// Every record of the shared OTRF and EVTX logs (the EVTX records as evtx_dump renders
/// them, `#attributes` shape), repeated to `BENCH_KAFKA_REAL` records (default 600,000),
/// one record per message keyed by its computer: into one member, and through `eval` from a
/// file. Most are not process creations, as in real Windows logs.
fn real_vs_file(setup: &Setup, dir: &Path) -> Result<RealRates> {
    let count: usize = std::env::var("BENCH_KAFKA_REAL").ok().map_or(Ok(600_000), |v| v.parse())?;
    let lines = crate::pipeline::shared_record_lines()?;
    let originals = lines.len();
    let messages: Vec<(String, Vec<u8>)> = lines
        .iter()
        .cycle()
        .take(count)
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap_or_default();
            let computer = ["/Hostname", "/Computer", "/Event/System/Computer"]
                .iter()
                .find_map(|p| record.pointer(p).and_then(Value::as_str))
                .unwrap_or("unknown");
            (computer.to_owned(), line.clone().into_bytes())
        })
        .collect();
    let file = dir.join("real.jsonl");
    let text: Vec<u8> = messages.iter().flat_map(|(_, m)| m.iter().copied().chain([b'\n'])).collect();
    std::fs::write(&file, text)?;
    setup.create_topic("real", PARTITIONS)?;
    setup.produce("real", &messages)?;
    let (elapsed, stderr) = eval_file(&setup.rules, &file)?;
    let evaluated: u64 = stderr
        .split(" evaluated")
        .next()
        .and_then(|before| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no count of events evaluated in {stderr}"))?;
    // The member's counters count process events; the records around them come with them.
    let (events, peak) = consume(setup, "real", "bench-real", 1, evaluated)?;
    let drain = drain(setup, "real", count)?;
    let per_event = count as f64 / evaluated as f64;
    eprintln!("real records: {originals} distinct, {count} in all, {evaluated} process events");
    Ok(RealRates { records: count, eval: count as f64 / elapsed, member: events * per_event, peak, drain })
}

const LATENCY_RATE: u64 = 200;
const LATENCY_SECONDS: u64 = 15;

/// Milliseconds from the produce of each matching event to the moment its match is read
/// back from the sink topic, sorted: events at a fixed rate, one record per message, one
/// member writing `--matches` to a topic. Each event's `ReportId` is its number.
fn latency(setup: &Setup) -> Result<Vec<f64>> {
    let total = LATENCY_RATE * LATENCY_SECONDS;
    let mut latencies = Vec::with_capacity(total as usize);
    at_fixed_rate(
        setup,
        "match",
        &["--matches"],
        |_, _| {},
        |value, sent_at| {
            let id = value["event"]["ReportId"]
                .as_u64()
                .or_else(|| value["event"]["ReportId"].as_str().and_then(|s| s.parse().ok()));
            if let Some(id) = id {
                latencies.push(sent_at[id as usize].elapsed().as_secs_f64() * 1000.0);
            }
            latencies.len() as u64 == total
        },
    )?;
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// Milliseconds from the end of each alert's window to the moment the alert is read back
/// from the sink topic, sorted: events stamped with the time they are produced, at a fixed
/// rate, one-second windows with 1 ms of allowed lateness, so that a window closes as soon
/// as every partition has delivered an event past its end.
fn alert_latency(setup: &Setup) -> Result<Vec<f64>> {
    let member = ["--window", "1s", "--allowed-lateness", "1ms"];
    let stamp = |message: &mut Value, _: u64| {
        let now = rulehost::events::time::format(chrono::Utc::now());
        message["records"][0]["time"] = now.clone().into();
        message["records"][0]["properties"]["Timestamp"] = now.into();
    };
    let mut latencies = Vec::new();
    // The windows that close while events still come: the events span at least
    // LATENCY_SECONDS windows, and all but the last close.
    let windows = LATENCY_SECONDS - 1;
    let mut seen = std::collections::BTreeSet::new();
    at_fixed_rate(setup, "alert", &member, stamp, |value, _| {
        if let Some(end) = value["WindowEnd"].as_str().and_then(rulehost::events::time::parse) {
            let late = chrono::Utc::now().signed_duration_since(end);
            latencies.push(late.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
            seen.insert(end);
        }
        seen.len() as u64 >= windows
    })?;
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// Runs one member from `NAME-in` to `NAME-out` with `member_args`, produces matching
/// events (100 devices, one record per message) at [`LATENCY_RATE`] for
/// [`LATENCY_SECONDS`], each changed by `stamp` (with its number), and hands every message
/// read back from the sink, with the instants the events were sent, to `received` until it
/// says that is enough.
fn at_fixed_rate(
    setup: &Setup,
    name: &str,
    member_args: &[&str],
    mut stamp: impl FnMut(&mut Value, u64),
    mut received: impl FnMut(&Value, &[Instant]) -> bool,
) -> Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let (broker, config, rules) = (&setup.broker, &setup.config, &setup.rules);
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    setup.create_topic(&input, PARTITIONS)?;
    setup.create_topic(&output, 1)?;
    let binary = crate::rulehost_binary();
    let mut member = Command::new(&binary)
        .args(["run", "--rules", &rules.display().to_string(), "--jobs", "1"])
        .args(member_args)
        .args(["--source", &format!("kafka://{}/{input}", broker.address), "--group", name])
        .args(["--sink", &format!("kafka://{}/{output}", broker.address)])
        .env("RULEHOST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // The reader's own fetch waits 10 ms at most (tansu holds a fetch for its full wait),
    // so that what is measured is rulehost's part.
    let reader: BaseConsumer = config
        .clone()
        .set("group.id", format!("{name}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    reader.subscribe(&[&output])?;
    // Both sides join their groups before the clock starts.
    for _ in 0..30 {
        let _ = reader.poll(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let producer: ThreadedProducer<DefaultProducerContext> = config.clone().set("linger.ms", "0").create()?;
    let total = LATENCY_RATE * LATENCY_SECONDS;
    let start = Instant::now();
    let mut sent_at = vec![start; total as usize];
    let (_, template) = records(1);
    let template: Value = serde_json::from_slice(&template[0].1)?;
    let mut n = 0u64;
    let mut enough = false;
    let deadline = start + Duration::from_secs(LATENCY_SECONDS + 30);
    while !enough && Instant::now() < deadline {
        // Produce what the rate says is due, then read what has come back.
        while n < total && start.elapsed() >= Duration::from_micros(n * 1_000_000 / LATENCY_RATE) {
            let mut message = template.clone();
            message["records"][0]["properties"]["ReportId"] = n.into();
            message["records"][0]["properties"]["DeviceName"] =
                format!("web{:03}.contoso.com", n % 100).into();
            stamp(&mut message, n);
            let payload = serde_json::to_vec(&message)?;
            let key = format!("web{:03}", n % 100);
            sent_at[n as usize] = Instant::now();
            if let Err((e, _)) = producer.send(BaseRecord::to(&input).key(&key).payload(&payload)) {
                bail!("producing: {e}");
            }
            n += 1;
        }
        if let Some(Ok(message)) = reader.poll(Duration::from_millis(1)) {
            let value: Value = serde_json::from_slice(message.payload().unwrap_or_default())?;
            enough = received(&value, &sent_at);
        }
    }
    let _ = member.kill();
    let _ = member.wait();
    ensure!(enough, "{name}: not everything came back within {} s", LATENCY_SECONDS + 30);
    Ok(())
}

/// `BENCH_ONLY=kafka-parse`: what reading a message costs the member's reading thread,
/// without a broker: every real record line (as the Kafka bench sends them, one per
/// message) through the member's message reader, against the same lines through the JSON
/// lines parser that `eval` uses; best of 5 rounds each, one thread.
pub fn message_parse() -> Result<()> {
    let lines = crate::pipeline::shared_record_lines()?;
    let rounds = 5;
    let time = |f: &dyn Fn(&str, &mut Vec<rulehost::events::Record>)| {
        let mut best = Duration::MAX;
        let mut records = 0;
        for _ in 0..rounds {
            let began = Instant::now();
            records = 0;
            for line in &lines {
                let mut out = Vec::new();
                f(line, &mut out);
                records += out.len();
            }
            best = best.min(began.elapsed());
        }
        (best, records)
    };
    let (message, message_records) =
        time(&|line, out| rulehost::sources::kafka::read_message("topic/0@1", line.as_bytes(), out));
    let (file, file_records) = time(&|line, out| {
        let input = rulehost::events::Input::bytes("lines.jsonl", line.as_bytes().to_vec());
        out.extend(input.open(rulehost::events::InputFormat::Jsonl).expect("opens"));
    });
    println!();
    println!("| {} real record lines, one thread, best of {rounds} | µs per line | records |", lines.len());
    println!("|---|---|---|");
    let per = |d: Duration| d.as_secs_f64() * 1e6 / lines.len() as f64;
    println!("| the member's message reader | {:.2} | {message_records} |", per(message));
    println!("| each line as a one-line JSON lines input | {:.2} | {file_records} |", per(file));
    Ok(())
}
