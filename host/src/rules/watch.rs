//! A rules directory kept in sync with the running host: every new or changed `*.wasm` is
//! verified against the trust policy, compiled and validated (contract version, imports,
//! metadata, a smoke call) off the evaluation path, then handed over as an update; the
//! evaluator swaps it in between two batches. A candidate that fails any step is reported
//! and never replaces the running version.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::{Trust, load_paths};
use crate::runtime::{CompiledRule, Digest, Runtime};

/// How long the watcher waits for a burst of file events to settle before rescanning:
/// a copy or a rename shows as several events.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// A change to the set of rules.
#[derive(Debug)]
pub enum RuleUpdate {
    /// A new or changed artifact passed every check.
    Loaded {
        /// Its file.
        path: PathBuf,
        /// The compiled rule.
        rule: Arc<CompiledRule>,
    },
    /// An artifact was removed: its rule is unloaded.
    Removed {
        /// Its file.
        path: PathBuf,
    },
    /// A candidate failed a check; the running version, if any, stays.
    Refused {
        /// Its file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What the watcher knows of the directory: each artifact's digest when last seen.
#[derive(Debug, Default)]
pub struct DirectoryState {
    known: HashMap<PathBuf, Digest>,
}

impl DirectoryState {
    /// Records the artifacts loaded at start.
    pub fn remember(&mut self, path: &Path, digest: Digest) {
        self.known.insert(path.to_path_buf(), digest);
    }
}

/// Compares `dir` with what `state` knows and returns the updates: candidates loaded and
/// checked, removals, refusals. An unchanged file (same digest) is not loaded again.
pub fn rescan(dir: &Path, runtime: &Runtime, trust: &Trust, state: &mut DirectoryState) -> Vec<RuleUpdate> {
    let mut updates = Vec::new();
    let files = match super::files_with_extension(dir, "wasm") {
        Ok(files) => files,
        Err(e) => {
            return vec![RuleUpdate::Refused {
                path: dir.to_path_buf(),
                reason: format!("cannot read the directory: {e}"),
            }];
        }
    };
    for path in files.iter().cloned() {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                updates.push(RuleUpdate::Refused { path, reason: e.to_string() });
                continue;
            }
        };
        let digest = Digest::of(&bytes);
        if state.known.get(&path) == Some(&digest) {
            continue;
        }
        // Remember the digest even when the candidate is refused: it is not retried
        // until the file changes again.
        state.known.insert(path.clone(), digest);
        match load_candidate(runtime, &path, trust) {
            Ok(rule) => updates.push(RuleUpdate::Loaded { path, rule }),
            Err(reason) => updates.push(RuleUpdate::Refused { path, reason }),
        }
    }
    let gone: Vec<PathBuf> = state.known.keys().filter(|p| !files.contains(p)).cloned().collect();
    for path in gone {
        state.known.remove(&path);
        updates.push(RuleUpdate::Removed { path });
    }
    updates
}

/// Loads one candidate: trust, compile, contract, imports, metadata, then a smoke call on
/// an empty batch and an empty window in a fresh instance.
fn load_candidate(runtime: &Runtime, path: &Path, trust: &Trust) -> Result<Arc<CompiledRule>, String> {
    let mut rules =
        load_paths(runtime, std::slice::from_ref(&path.to_path_buf()), trust).map_err(|e| e.to_string())?;
    if rules.len() != 1 {
        return Err(format!(
            "a pack of {} rules: `rulehost run` takes packs of one rule for now",
            rules.len()
        ));
    }
    let rule = rules.remove(0);
    let mut instance = rule.pack().instantiate().map_err(|e| e.to_string())?;
    instance.evaluate(&[]).map_err(|e| format!("smoke call: {e}"))?;
    instance.summarize(rule.member(), (0, 1), &[]).map_err(|e| format!("smoke call: {e}"))?;
    Ok(rule)
}

/// A running watcher; dropping it stops watching.
pub struct DirectoryWatcher {
    _watcher: notify::RecommendedWatcher,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for DirectoryWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryWatcher").finish_non_exhaustive()
    }
}

impl Drop for DirectoryWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Watches `dir` and sends the updates of every (debounced) change, and of every forced
/// rescan (`rescan` set, e.g. by SIGHUP), to `updates`.
pub fn watch(
    dir: PathBuf,
    runtime: Runtime,
    trust: Trust,
    mut state: DirectoryState,
    rescan_now: Arc<AtomicBool>,
    updates: Sender<RuleUpdate>,
) -> notify::Result<DirectoryWatcher> {
    let (events_tx, events_rx) = channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let _ = events_tx.send(event.is_ok());
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("rulehost-rules".into())
        .spawn(move || {
            watch_loop(&dir, &runtime, &trust, &mut state, &rescan_now, &events_rx, &updates, &stopped)
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(DirectoryWatcher { _watcher: watcher, stop })
}

#[allow(clippy::too_many_arguments)]
fn watch_loop(
    dir: &Path,
    runtime: &Runtime,
    trust: &Trust,
    state: &mut DirectoryState,
    rescan_now: &AtomicBool,
    events: &Receiver<bool>,
    updates: &Sender<RuleUpdate>,
    stop: &AtomicBool,
) {
    // A file that landed after the caller's first scan but before the watch began has
    // sent no event: one rescan now catches it (unchanged files give no update).
    for update in rescan(dir, runtime, trust, state) {
        if updates.send(update).is_err() {
            return;
        }
    }
    while !stop.load(Ordering::Relaxed) {
        let changed = match events.recv_timeout(Duration::from_millis(100)) {
            Ok(_) => {
                // Let the burst settle.
                while events.recv_timeout(DEBOUNCE).is_ok() {}
                true
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let forced = rescan_now.swap(false, Ordering::Relaxed);
        if !changed && !forced {
            continue;
        }
        if forced {
            tracing::info!(dir = %dir.display(), "rescanning the rules directory (SIGHUP)");
        }
        for update in rescan(dir, runtime, trust, state) {
            if updates.send(update).is_err() {
                return;
            }
        }
    }
}
