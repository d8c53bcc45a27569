//! A Kafka topic as a sink: alerts and matches produced as JSON by an idempotent producer
//! that waits for every in-sync replica (`acks=all`). An alert is keyed by its id, which
//! depends only on the rule id and version, the window and the group key (the device), so
//! an alert made again after a restart carries the id it had, and a consumer downstream can
//! drop the duplicate. `flush` returns only when every message produced so far is
//! acknowledged: the source commits its offsets after it.

use std::io;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;

use serde_json::{Map, Value};

use super::{MatchRecord, Sink, UNCUT_ALERT_COLUMNS, UNCUT_MATCH_MEMBERS, alert_json, fit_json};
use crate::alerts::{Alert, Match};
use crate::runtime::AlertValue;
use crate::sources::kafka::{KafkaAddress, client_config};

/// How long a flush waits for acknowledgements before it fails.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Counts failed deliveries, and keeps the last failure's words.
#[derive(Default)]
struct Failures {
    failed: AtomicU64,
    last_failure: Mutex<Option<String>>,
}

/// The producer's context: it hears every delivery.
#[derive(Clone, Default)]
struct Deliveries(Arc<Failures>);

impl std::ops::Deref for Deliveries {
    type Target = Failures;

    fn deref(&self) -> &Failures {
        &self.0
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
        }
    }
}

/// librdkafka's `message.max.bytes` by default: the producer refuses a larger message.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Bytes kept below `message.max.bytes` for what the producer adds to a message's key and
/// value (a record's header), so that a message cut to fit is taken.
const MESSAGE_OVERHEAD_BYTES: usize = 1024;

/// Alerts and matches to a topic.
pub struct KafkaSink {
    address: KafkaAddress,
    producer: ThreadedProducer<Deliveries>,
    deliveries: Deliveries,
    /// The largest message the producer takes (`message.max.bytes`).
    message_max_bytes: usize,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink").field("address", &self.address).finish_non_exhaustive()
    }
}

/// The deterministic id of an alert: the rule id and version, the window, the group key
/// (the alert's `DeviceName`, the key Soft Cell and Sigma alerts group by), and the first
/// event it covers (its `Timestamp` and `ReportId`). The same events read again (a restart
/// from the committed offsets) make the same alert with the same id; another alert of the
/// same window and device (a part of a window a device filled, or the matches of events that
/// came after it closed) covers other events first, and gets an id of its own, which a
/// consumer dropping duplicates would otherwise have dropped.
pub fn alert_id(alert: &Alert) -> String {
    use sha2::Digest as _;
    let metadata = alert.rule.metadata();
    let group = alert
        .columns
        .iter()
        .find(|(name, _)| name == "DeviceName")
        .map(|(_, value)| match value {
            AlertValue::Text(text) => text.clone(),
            AlertValue::Texts(texts) => texts.join("\u{1f}"),
            AlertValue::Number(n) => n.to_string(),
        })
        .unwrap_or_default();
    let mut hash = sha2::Sha256::new();
    for part in [
        metadata.id.as_str(),
        metadata.version.as_str(),
        &alert.window_start_ms.to_string(),
        &alert.window_end_ms.to_string(),
        &group,
        &alert.first_timestamp,
        alert.report_ids.first().map_or("", String::as_str),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..16])
}

impl KafkaSink {
    /// A producer to `address`'s topic, with any librdkafka `options` (security).
    pub fn new(address: KafkaAddress, options: &[(String, String)]) -> io::Result<Self> {
        let mut config = client_config(&address, options);
        config.set("enable.idempotence", "true").set("acks", "all");
        let deliveries = Deliveries::default();
        let producer = config
            .create_with_context(deliveries.clone())
            .map_err(|e| io::Error::other(format!("kafka://{}/{}: {e}", address.brokers, address.topic)))?;
        let message_max_bytes = options
            .iter()
            .rev()
            .find(|(key, _)| key == "message.max.bytes")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
        Ok(KafkaSink { address, producer, deliveries, message_max_bytes })
    }

    fn produce_bytes(&mut self, key: &str, payload: &[u8]) -> io::Result<()> {
        let mut record = BaseRecord::to(&self.address.topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    // The local queue is full: wait for acknowledgements, then try again.
                    record = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    return Err(io::Error::other(format!(
                        "kafka://{}/{}: {e}",
                        self.address.brokers, self.address.topic
                    )));
                }
            }
        }
    }

    /// `payload`, or when it is larger than a message may be with `key`, `object` (the same
    /// JSON) cut to fit ([`fit_json`], `uncut` left whole), said in the log with `what`. Refused
    /// whole, such a message would end the run, and the run started again from the committed
    /// offsets would make it again.
    fn fitted(
        &self,
        key: &str,
        payload: Vec<u8>,
        object: impl FnOnce() -> io::Result<Map<String, Value>>,
        uncut: &[&str],
        what: &str,
    ) -> io::Result<Vec<u8>> {
        let fits = self.message_max_bytes.saturating_sub(key.len() + MESSAGE_OVERHEAD_BYTES);
        if payload.len() <= fits {
            return Ok(payload);
        }
        let mut object = object()?;
        fit_json(&mut object, fits, uncut);
        let cut = serde_json::to_vec(&object)?;
        tracing::warn!(
            topic = %self.address.topic,
            key,
            "{what} of {} bytes cut to {} to fit a message (message.max.bytes {})",
            payload.len(),
            cut.len(),
            self.message_max_bytes
        );
        Ok(cut)
    }
}

impl Sink for KafkaSink {
    fn alert(&mut self, alert: &Alert) -> io::Result<()> {
        let id = alert_id(alert);
        let Value::Object(mut object) = alert_json(alert) else { unreachable!("an alert is an object") };
        object.insert("AlertId".into(), id.clone().into());
        let payload = serde_json::to_vec(&object)?;
        let payload = self.fitted(&id, payload, || Ok(object), &UNCUT_ALERT_COLUMNS, "an alert")?;
        self.produce_bytes(&id, &payload)
    }

    fn matched(&mut self, matched: &Match<'_>) -> io::Result<()> {
        let key = format!("{}:{}", matched.rule.metadata().id, matched.event.origin());
        let record = MatchRecord::of(matched);
        let payload = serde_json::to_vec(&record)?;
        let object = || match serde_json::to_value(&record)? {
            Value::Object(object) => Ok(object),
            _ => unreachable!("a match is an object"),
        };
        let payload = self.fitted(&key, payload, object, &UNCUT_MATCH_MEMBERS, "a match")?;
        self.produce_bytes(&key, &payload)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.producer.flush(Timeout::After(FLUSH_TIMEOUT)).map_err(|e| {
            io::Error::other(format!(
                "kafka://{}/{}: not acknowledged: {e}",
                self.address.brokers, self.address.topic
            ))
        })?;
        let failed = self.deliveries.failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let last = self
                .deliveries
                .last_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_default();
            return Err(io::Error::other(format!(
                "kafka://{}/{}: {failed} message(s) not delivered: {last}",
                self.address.brokers, self.address.topic
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_alerts_of_one_window_and_device_have_ids_of_their_own_and_one_alert_the_same_id() {
        let runtime = crate::runtime::Runtime::new().expect("a runtime");
        let rule = crate::rules::load_bundled(&runtime).expect("the bundled rule");
        let alert = |first: &str, ids: &[&str]| Alert {
            rule: rule.clone(),
            window_start_ms: 0,
            window_end_ms: 3_600_000,
            columns: vec![("DeviceName".into(), AlertValue::Text("web01".into()))],
            match_count: ids.len(),
            first_timestamp: first.into(),
            last_timestamp: "1970-01-01T00:30:00Z".into(),
            report_ids: ids.iter().map(|&s| s.to_owned()).collect(),
            window_part: None,
            late: false,
        };
        let whole = alert_id(&alert("1970-01-01T00:00:01Z", &["1", "2"]));
        assert_eq!(alert_id(&alert("1970-01-01T00:00:01Z", &["1", "2"])), whole, "made again");
        // The window's next part, or a late event's alert: the same window and device.
        assert_ne!(alert_id(&alert("1970-01-01T00:00:02Z", &["3"])), whole);
        assert_ne!(alert_id(&alert("1970-01-01T00:00:01Z", &["7", "8"])), whole);
    }
}
