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

use super::{MatchRecord, Sink, alert_json};
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

/// Alerts and matches to a topic.
pub struct KafkaSink {
    address: KafkaAddress,
    producer: ThreadedProducer<Deliveries>,
    deliveries: Deliveries,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink").field("address", &self.address).finish_non_exhaustive()
    }
}

/// The deterministic id of an alert: the rule id and version, the window, and the group
/// key (the alert's `DeviceName`, the key Soft Cell and Sigma alerts group by).
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
        Ok(KafkaSink { address, producer, deliveries })
    }

    fn produce(&mut self, key: &str, value: &impl serde::Serialize) -> io::Result<()> {
        let payload = serde_json::to_vec(value)?;
        let mut record = BaseRecord::to(&self.address.topic).key(key).payload(&payload);
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
}

impl Sink for KafkaSink {
    fn alert(&mut self, alert: &Alert) -> io::Result<()> {
        let id = alert_id(alert);
        let mut value = alert_json(alert);
        if let Some(object) = value.as_object_mut() {
            object.insert("AlertId".into(), id.clone().into());
        }
        self.produce(&id, &value)
    }

    fn matched(&mut self, matched: &Match<'_>) -> io::Result<()> {
        let key = format!("{}:{}", matched.rule.metadata().id, matched.event.origin());
        self.produce(&key, &MatchRecord::of(matched))
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
