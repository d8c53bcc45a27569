//! A rules directory kept in sync with the running host: every new or changed `*.wasm` is
//! verified against the trust policy, compiled and validated (contract version, imports,
//! metadata, a smoke call) off the evaluation path, then handed over as an update; the
//! evaluator swaps it in between two batches. A candidate that fails any step is reported
//! and never replaces the running version.
//!
//! The directory's Sigma files (`.yml`, `.yaml`, searched recursively) make one pack, known
//! by the directory's path. A changed file is recompiled on its own and the pack rebuilt; a
//! file that no longer compiles is reported and its last good version stays in the pack, as
//! a refused component leaves its running version. The rules whose compiled form did not
//! change are named in the update, so that their open windows move to the new pack.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::{Trust, load_paths};
use crate::runtime::{CompiledRule, Digest, Runtime};
use crate::sigma;
use rulehost_sigma::ir;

/// How long the watcher waits for a burst of file events to settle before rescanning:
/// a copy or a rename shows as several events.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// A change to the set of rules.
#[derive(Debug)]
pub enum RuleUpdate {
    /// A new or changed artifact passed every check.
    Loaded {
        /// Its file (the directory, for the pack of its Sigma files).
        path: PathBuf,
        /// The rules of the compiled pack, in its order (one for a single-rule component).
        rules: Vec<Arc<CompiledRule>>,
        /// Ids of rules that are the same as in the version running from `path`: their open
        /// windows carry over. Empty for a component (its code changed).
        unchanged: BTreeSet<String>,
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
    /// Files that are no candidates: Sigma rules of other log sources, which a folder of
    /// every Sigma rule holds by the hundred (not an error of theirs; nothing was running),
    /// or of a status whose rules are left out (a running one is unloaded).
    LeftOut {
        /// The directory, or the file.
        path: PathBuf,
        /// Which, and why.
        reason: String,
    },
}

/// Logs that `rules` were loaded from `path`: a rule by its id, version and digest, a pack
/// by its artifact and size.
pub fn log_loaded(path: &Path, rules: &[Arc<CompiledRule>]) {
    match rules {
        [rule] => {
            tracing::info!(rule = %rule.metadata().id, version = %rule.metadata().version, digest = %rule.digest(), path = %path.display(), "rule loaded")
        }
        many => {
            tracing::info!(pack = %many[0].artifact(), rules = many.len(), digest = %many[0].digest(), path = %path.display(), "pack loaded")
        }
    }
}

/// What the watcher knows of the directory: each artifact's digest when last seen, and its
/// Sigma files.
#[derive(Debug, Default)]
pub struct DirectoryState {
    known: HashMap<PathBuf, Digest>,
    sigma: BTreeMap<PathBuf, SigmaFile>,
    /// The rules of the Sigma pack last handed over, by id.
    sigma_running: Option<BTreeMap<String, ir::Rule>>,
    /// A file was left for the next rescan because it was still being written.
    postponed: bool,
    /// How recently modified a file must be to count as still being written (`None`:
    /// [`DEBOUNCE`]).
    settle: Option<Duration>,
}

/// A Sigma file as last seen: its digest, and the last version of it that compiled.
#[derive(Debug)]
struct SigmaFile {
    digest: Digest,
    rule: Option<ir::Rule>,
}

impl DirectoryState {
    /// Records the artifacts loaded at start.
    pub fn remember(&mut self, path: &Path, digest: Digest) {
        self.known.insert(path.to_path_buf(), digest);
    }

    /// Whether the last rescan left a file for later because it was still being written:
    /// the watcher rescans again once it has settled.
    pub fn postponed(&self) -> bool {
        self.postponed
    }

    /// Counts a file modified less than `settle` ago as still being written (default:
    /// [`DEBOUNCE`]).
    pub fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = Some(settle);
        self
    }
}

/// Whether `path` was modified less than `settle` ago: a copy in progress, whose partial
/// bytes would be refused as a broken artifact. Its last write sends an event, and the
/// rescan after it finds the file settled. A time that cannot be read, or one in the
/// future, counts as settled, so that no file waits forever.
fn still_being_written(path: &Path, settle: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .is_some_and(|age| age < settle)
}

/// The first look at `dir`, at start: every file as it is now, so that what the directory
/// holds when the host starts is what it starts with.
pub fn scan(dir: &Path, runtime: &Runtime, trust: &Trust, state: &mut DirectoryState) -> Vec<RuleUpdate> {
    compare(dir, runtime, trust, state, false)
}

/// Compares `dir` with what `state` knows and returns the updates: candidates loaded and
/// checked, removals, refusals. An unchanged file (same digest) is not loaded again; a file
/// still being written is left for a later rescan ([`DirectoryState::postponed`]).
pub fn rescan(dir: &Path, runtime: &Runtime, trust: &Trust, state: &mut DirectoryState) -> Vec<RuleUpdate> {
    compare(dir, runtime, trust, state, true)
}

fn compare(
    dir: &Path,
    runtime: &Runtime,
    trust: &Trust,
    state: &mut DirectoryState,
    wait_for_writes: bool,
) -> Vec<RuleUpdate> {
    let mut updates = Vec::new();
    state.postponed = false;
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
        if wait_for_writes && still_being_written(&path, state.settle.unwrap_or(DEBOUNCE)) {
            state.postponed = true;
            continue;
        }
        let Some((_, digest)) = read_file(&path, &mut updates) else { continue };
        if state.known.get(&path) == Some(&digest) {
            continue;
        }
        // Remember the digest even when the candidate is refused: it is not retried
        // until the file changes again.
        state.known.insert(path.clone(), digest);
        match load_candidate(runtime, &path, trust) {
            Ok(rules) => updates.push(RuleUpdate::Loaded { path, rules, unchanged: BTreeSet::new() }),
            Err(reason) => updates.push(RuleUpdate::Refused { path, reason }),
        }
    }
    let gone: Vec<PathBuf> = state.known.keys().filter(|p| !files.contains(p)).cloned().collect();
    for path in gone {
        state.known.remove(&path);
        updates.push(RuleUpdate::Removed { path });
    }
    rescan_sigma(dir, runtime, trust, state, &mut updates, wait_for_writes);
    updates
}

/// A file's bytes and digest; a file that cannot be read is reported as refused.
fn read_file(path: &Path, updates: &mut Vec<RuleUpdate>) -> Option<(Vec<u8>, Digest)> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let digest = Digest::of(&bytes);
            Some((bytes, digest))
        }
        Err(e) => {
            updates.push(RuleUpdate::Refused { path: path.to_path_buf(), reason: e.to_string() });
            None
        }
    }
}

/// What one line says of the Sigma files out of scope (other log sources, or a status
/// deprecated or unsupported: see [`sigma::SigmaError::is_out_of_scope`]) a scan left out,
/// each with its construct.
fn out_of_scope_left_out(dir: &Path, files: &[(PathBuf, String)]) -> String {
    const NAMED: usize = 5;
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, construct) in files {
        *tally.entry(construct.as_str()).or_default() += 1;
    }
    let tally: Vec<String> = tally
        .iter()
        .map(|(&construct, n)| match construct {
            sigma::LOGSOURCE => format!("of other log sources: {n}"),
            sigma::STATUS => format!("deprecated or unsupported: {n}"),
            other => format!("{other}: {n}"),
        })
        .collect();
    let mut names: Vec<String> = files
        .iter()
        .map(|(f, _)| f)
        .take(NAMED)
        .map(|f| {
            crate::text::printable(&f.strip_prefix(dir).unwrap_or(f).display().to_string(), &[]).into_owned()
        })
        .collect();
    if files.len() > NAMED {
        names.push(format!("and {} more", files.len() - NAMED));
    }
    format!(
        "{} left out ({}; only Windows process_creation rules, of status stable, test or \
         experimental, are compiled): {}; `rulehost sigma check {}` lists them",
        if files.len() == 1 { "1 Sigma file".to_owned() } else { format!("{} Sigma files", files.len()) },
        tally.join(", "),
        names.join(", "),
        crate::text::printable(&dir.display().to_string(), &[])
    )
}

/// The Sigma part of [`rescan`]: recompiles the changed files and, when the set of compiled
/// rules changed, builds, checks and hands over the directory's pack.
fn rescan_sigma(
    dir: &Path,
    runtime: &Runtime,
    trust: &Trust,
    state: &mut DirectoryState,
    updates: &mut Vec<RuleUpdate>,
    wait_for_writes: bool,
) {
    let files = match sigma::files_under(dir) {
        Ok(files) => files,
        Err(e) => {
            updates.push(RuleUpdate::Refused {
                path: dir.to_path_buf(),
                reason: format!("cannot read the directory's Sigma files: {e}"),
            });
            return;
        }
    };
    state.sigma.retain(|path, _| files.contains(path));
    // Sigma text carries no signature: under a policy it loads only as a signed pack.
    let unsigned_refused = trust.policy.is_some() && !trust.allow_unsigned;
    // New files out of scope, reported together: a folder of every Sigma rule holds some
    // 1,600 of other log sources, and a line each buried the rest.
    let mut out_of_scope: Vec<(PathBuf, String)> = Vec::new();
    for path in files {
        if wait_for_writes && still_being_written(&path, state.settle.unwrap_or(DEBOUNCE)) {
            // Its last version, if any, stays in the pack until it has settled.
            state.postponed = true;
            continue;
        }
        let Some((bytes, digest)) = read_file(&path, updates) else { continue };
        if state.sigma.get(&path).is_some_and(|f| f.digest == digest) {
            continue;
        }
        let previous = state.sigma.remove(&path).and_then(|f| f.rule);
        let compiled = if unsigned_refused {
            Err((
                None,
                "Sigma text carries no signature and the trust policy requires one: compile it \
                 with `rulehost sigma compile` and sign the pack"
                    .to_owned(),
            ))
        } else {
            std::str::from_utf8(&bytes).map_err(|e| (None, format!("not UTF-8: {e}"))).and_then(|text| {
                sigma::compile_text(&path, text)
                    .map_err(|e| (e.is_out_of_scope().then(|| e.construct()), e.to_string()))
            })
        };
        let rule = match compiled {
            Ok(rule) => Some(rule),
            Err((Some(construct), _)) if previous.is_none() => {
                out_of_scope.push((path.clone(), construct));
                None
            }
            // A running rule whose authors marked it deprecated or unsupported is meant to
            // stop: it is unloaded, as a file removed (a broken edit keeps the last version).
            Err((Some(construct), reason)) if construct == sigma::STATUS => {
                updates.push(RuleUpdate::LeftOut {
                    path: path.clone(),
                    reason: format!("{reason}; its last version is unloaded"),
                });
                None
            }
            Err((_, reason)) => {
                let reason = match &previous {
                    Some(_) => format!("{reason}; its last version that compiled stays"),
                    None => reason,
                };
                updates.push(RuleUpdate::Refused { path: path.clone(), reason });
                previous
            }
        };
        state.sigma.insert(path, SigmaFile { digest, rule });
    }
    if !out_of_scope.is_empty() {
        updates.push(RuleUpdate::LeftOut {
            path: dir.to_path_buf(),
            reason: out_of_scope_left_out(dir, &out_of_scope),
        });
    }

    // The rules in path order; a second file with an id already taken is left out.
    let mut rules: BTreeMap<String, ir::Rule> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (path, file) in &state.sigma {
        let Some(rule) = &file.rule else { continue };
        if rules.contains_key(&rule.id) {
            tracing::warn!(path = %path.display(), id = %rule.id, "Sigma rule left out: its id is taken by an earlier file");
            continue;
        }
        order.push(rule.id.clone());
        rules.insert(rule.id.clone(), rule.clone());
    }
    if state.sigma_running.as_ref() == Some(&rules) {
        return;
    }
    if rules.is_empty() {
        if state.sigma_running.take().is_some() {
            updates.push(RuleUpdate::Removed { path: dir.to_path_buf() });
        }
        return;
    }
    let ordered: Vec<ir::Rule> = order.iter().map(|id| rules[id].clone()).collect();
    match load_sigma_pack(runtime, dir, &ordered) {
        Ok(loaded) => {
            let unchanged = state.sigma_running.as_ref().map_or_else(BTreeSet::new, |running| {
                rules
                    .iter()
                    .filter(|(id, rule)| running.get(*id) == Some(rule))
                    .map(|(id, _)| id.clone())
                    .collect()
            });
            state.sigma_running = Some(rules);
            updates.push(RuleUpdate::Loaded { path: dir.to_path_buf(), rules: loaded, unchanged });
        }
        Err(reason) => updates.push(RuleUpdate::Refused { path: dir.to_path_buf(), reason }),
    }
}

/// Builds the pack of `rules`, compiles it and makes the smoke calls.
fn load_sigma_pack(
    runtime: &Runtime,
    dir: &Path,
    rules: &[ir::Rule],
) -> Result<Vec<Arc<CompiledRule>>, String> {
    let bytes = sigma::pack::build_with_cache(rules, runtime.cache()).map_err(|e| e.to_string())?;
    let name = format!("sigma:{}", dir.display());
    let rules = runtime.compile(&name, &bytes).map_err(|e| e.to_string())?.into_rules();
    smoke(&rules)?;
    Ok(rules)
}

/// An empty batch and an empty window of each rule, in a fresh instance.
fn smoke(rules: &[Arc<CompiledRule>]) -> Result<(), String> {
    let mut instance = rules[0].pack().instantiate().map_err(|e| e.to_string())?;
    instance.evaluate(&[]).map_err(|e| format!("smoke call: {e}"))?;
    for rule in rules {
        instance
            .summarize::<crate::events::ProcessEvent>(rule.member(), (0, 1), &[])
            .map_err(|e| format!("smoke call: {e}"))?;
    }
    Ok(())
}

/// Loads one candidate: trust, compile, contract, imports, metadata, then a smoke call on
/// an empty batch and an empty window of each rule in a fresh instance.
pub fn load_candidate(
    runtime: &Runtime,
    path: &Path,
    trust: &Trust,
) -> Result<Vec<Arc<CompiledRule>>, String> {
    let rules =
        load_paths(runtime, std::slice::from_ref(&path.to_path_buf()), trust).map_err(|e| e.to_string())?;
    smoke(&rules)?;
    Ok(rules)
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
    // Recursive: Sigma files are searched in subdirectories (components are not).
    watcher.watch(&dir, RecursiveMode::Recursive)?;
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
        if !changed && !forced && !state.postponed {
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
