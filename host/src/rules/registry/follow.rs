//! `run --rules oci://REPO:TAG`: the tag is asked for its digest every poll interval; a new
//! digest is pulled, verified and checked like a changed file in a watched directory, then
//! handed over as an update. A registry that cannot be reached, or a candidate that fails a
//! check, is logged, and the running version stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::{Reference, Registry, RegistryError};
use crate::rules::Trust;
use crate::rules::watch::{RuleUpdate, load_candidate};
use crate::runtime::Runtime;

/// The path under which a followed tag's rules run: the reference itself, so that every
/// version pulled from it replaces the last.
pub fn source_path(reference: &Reference) -> PathBuf {
    PathBuf::from(Reference { digest: None, ..reference.clone() }.to_string())
}

/// Pulls `reference` and loads it as a candidate: the update to hand over, and the digest.
pub fn pull_and_check(
    registry: &Registry,
    runtime: &Runtime,
    trust: &Trust,
    reference: &Reference,
) -> Result<(RuleUpdate, String), RegistryError> {
    let pulled = registry.pull(reference)?;
    for problem in &pulled.signature_problems {
        tracing::warn!(reference = %reference, "{problem}");
    }
    let path = source_path(reference);
    let update = match load_candidate(runtime, &pulled.path, trust) {
        Ok(rules) => RuleUpdate::Loaded { path, rules, unchanged: Default::default() },
        Err(reason) => {
            RuleUpdate::Refused { path, reason: format!("{reference} ({}): {reason}", pulled.manifest) }
        }
    };
    Ok((update, pulled.manifest))
}

/// A running follower; dropping it stops it.
#[derive(Debug)]
pub struct TagFollower {
    stop: Arc<AtomicBool>,
}

impl Drop for TagFollower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Follows `reference` from `current` (the digest running now), sending each new version's
/// update to `updates`; `poll_now` (SIGHUP) asks at once.
#[allow(clippy::too_many_arguments)]
pub fn follow(
    registry: Registry,
    runtime: Runtime,
    trust: Trust,
    reference: Reference,
    current: String,
    interval: Duration,
    poll_now: Arc<AtomicBool>,
    updates: Sender<RuleUpdate>,
) -> std::io::Result<TagFollower> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::Builder::new().name("rulehost-registry".into()).spawn(move || {
        // The last digest seen, loaded or refused: a refused candidate is not retried until
        // the tag moves again.
        let mut seen = current;
        let mut next = Instant::now() + interval;
        while !stopped.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let forced = poll_now.swap(false, Ordering::Relaxed);
            if !forced && Instant::now() < next {
                continue;
            }
            next = Instant::now() + interval;
            if forced {
                tracing::info!(reference = %reference, "asking the registry now (SIGHUP)");
            }
            let digest = match registry.current_digest(&reference) {
                Ok(digest) => digest,
                Err(error) => {
                    tracing::warn!(reference = %reference, "the registry could not be asked; the running version stays: {error}");
                    continue;
                }
            };
            if digest == seen {
                continue;
            }
            tracing::info!(reference = %reference, digest = %digest, "the tag moved");
            match pull_and_check(&registry, &runtime, &trust, &reference.at_digest(&digest)) {
                Ok((update, _)) => {
                    if matches!(update, RuleUpdate::Loaded { .. })
                        && let Err(error) = registry.store().set_tag(&reference, &digest)
                    {
                        tracing::warn!(reference = %reference, "the store could not record the tag: {error}");
                    }
                    seen = digest;
                    if updates.send(update).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(reference = %reference, "the new version could not be pulled; the running version stays: {error}")
                }
            }
        }
    })?;
    Ok(TagFollower { stop })
}
