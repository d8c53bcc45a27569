//! The WebAssembly runtime: one engine, rules compiled once, and an instance (with its own
//! store) per rule per worker.

pub mod artifact;
mod bindings;
mod cache;
mod limits;
pub mod pack;

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

pub use artifact::{ArtifactInfo, CONTRACT_PACKAGE, CONTRACT_VERSIONS, Digest};
use bindings::{RuleBindings, RuleBindingsPre};
pub use cache::{ComponentCache, DEFAULT_CACHE_MAX_BYTES};
pub use limits::{LOAD_CALL_DEADLINE, Limits, RuleState, TICK};

use crate::contract::RuleMetadata;
use crate::events::{Field, FieldValues, ProcessEvent};

/// The contract's interface of types, the one import a rule may have (it holds no
/// functions); followed by the version.
const TYPES_INTERFACE: &str = "detect:rule/types@";
/// Set (to anything) in the environment, the engine writes a perf map of the compiled
/// rules, so that `perf report` shows guest functions by name.
pub const PERF_MAP_VARIABLE: &str = "RULEHOST_PERF_MAP";

/// A rule artifact that could not be compiled and checked against the contract.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The file could not be read.
    #[error("{artifact}: {source}")]
    Io {
        /// The artifact's name.
        artifact: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Larger than the limit on artifacts.
    #[error("{artifact}: {size} bytes, more than the limit of {limit} bytes for a rule artifact")]
    TooLarge {
        /// The artifact's name.
        artifact: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The limits themselves are unusable.
    #[error("invalid limits: {0}")]
    InvalidLimits(String),
    /// Not a WebAssembly component.
    #[error("{artifact}: not a WebAssembly component: {reason}")]
    NotAComponent {
        /// The artifact's name.
        artifact: String,
        /// What is wrong.
        reason: String,
    },
    /// No contract version recorded.
    #[error(
        "{artifact}: no contract version (custom section `{}` missing); build rules with rulehost-sdk",
        artifact::CONTRACT_SECTION
    )]
    NoContractVersion {
        /// The artifact's name.
        artifact: String,
    },
    /// Built against a contract this host does not implement.
    #[error(
        "{artifact}: built against contract {CONTRACT_PACKAGE}@{found}, this host implements {}",
        implemented_contracts()
    )]
    IncompatibleContract {
        /// The artifact's name.
        artifact: String,
        /// The version the rule declares.
        found: String,
    },
    /// Imports something the host does not provide.
    #[error("{artifact}: imports {}, but a rule may import nothing but the contract's types", imports.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "))]
    ForbiddenImport {
        /// The artifact's name.
        artifact: String,
        /// Every import refused.
        imports: Vec<String>,
    },
    /// Compilation, linking or the metadata call failed.
    #[error("{artifact}: {stage}: {message}")]
    Wasm {
        /// The artifact's name.
        artifact: String,
        /// What was being done.
        stage: &'static str,
        /// The engine's message.
        message: String,
    },
    /// The metadata breaks the contract.
    #[error("{artifact}: rule {id:?}: invalid metadata: {problem}")]
    InvalidMetadata {
        /// The artifact's name.
        artifact: String,
        /// The rule id, as declared.
        id: String,
        /// What is wrong.
        problem: String,
    },
}

/// A rule call that failed: a trap, a limit reached, or output that breaks the contract.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rule {id} {version} ({digest}): {stage}: {kind}: {message}")]
pub struct RuleError {
    /// The rule's id.
    pub id: String,
    /// The rule's version.
    pub version: String,
    /// The artifact's digest.
    pub digest: Digest,
    /// The call that failed.
    pub stage: &'static str,
    /// What kind of failure.
    pub kind: FailureKind,
    /// What happened, in the engine's words.
    pub message: String,
}

/// Why a rule call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The call ran past its deadline.
    Deadline,
    /// The call burnt its fuel.
    OutOfFuel,
    /// The rule tried to grow its memory past the limit.
    OutOfMemory,
    /// The rule's call stack overflowed (deep recursion).
    StackOverflow,
    /// The rule executed `unreachable` (a panic or abort in a Rust rule).
    Unreachable,
    /// Any other trap.
    Trap,
    /// The rule returned something the contract forbids or the limits refuse.
    BadOutput,
    /// `summarize` returned more alerts, or more bytes of them, than one call may.
    TooMuchOutput,
    /// The rule could not be instantiated.
    Instantiation,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::Deadline => "deadline exceeded",
            FailureKind::OutOfFuel => "out of fuel",
            FailureKind::OutOfMemory => "out of memory",
            FailureKind::StackOverflow => "stack overflow",
            FailureKind::Unreachable => "unreachable executed (a panic in the rule)",
            FailureKind::Trap => "trap",
            FailureKind::BadOutput => "bad output",
            FailureKind::TooMuchOutput => "too much output",
            FailureKind::Instantiation => "instantiation failed",
        })
    }
}

/// The kind of a trap, from the engine's error.
fn classify(error: &wasmtime::Error) -> FailureKind {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => FailureKind::Deadline,
        Some(wasmtime::Trap::OutOfFuel) => FailureKind::OutOfFuel,
        Some(wasmtime::Trap::StackOverflow) => FailureKind::StackOverflow,
        Some(wasmtime::Trap::UnreachableCodeReached) => FailureKind::Unreachable,
        _ if format!("{error:#}").contains("forcing trap when growing memory") => FailureKind::OutOfMemory,
        _ => FailureKind::Trap,
    }
}

/// The engine and linker that every rule is compiled and instantiated with, the limits
/// every rule runs under, and the ticker thread that measures deadlines.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<RuleState>>,
    limits: Arc<Limits>,
    /// Whether the limits are enforced (always, but for the benchmark's comparison).
    enforce: bool,
    /// Compiled components on disk, if caching is on.
    cache: Option<ComponentCache>,
    _ticker: Arc<limits::Ticker>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime with the default [`Limits`].
    pub fn new() -> Result<Self, CompileError> {
        Self::with_limits(Limits::default())
    }

    /// A runtime whose rules run under `limits`.
    pub fn with_limits(limits: Limits) -> Result<Self, CompileError> {
        Self::build(limits, true)
    }

    /// A runtime that enforces no limit at all: no deadline (code compiled without epoch
    /// checks), no memory limit, no fuel. Only `make bench` uses it, to measure what the
    /// sandbox costs; never run rules with it.
    #[doc(hidden)]
    pub fn unenforced_for_benchmarks() -> Result<Self, CompileError> {
        Self::build(Limits { fuel: None, ..Limits::default() }, false)
    }

    fn build(limits: Limits, enforce: bool) -> Result<Self, CompileError> {
        limits.validate().map_err(CompileError::InvalidLimits)?;
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Rule calls are synchronous; the async machinery made each call ~4x dearer.
        config.concurrency_support(false);
        // Deadlines: the ticker advances the epoch, each call gets a budget of ticks.
        config.epoch_interruption(enforce);
        config.consume_fuel(limits.fuel.is_some());
        // A pack's initial memory (its matcher, built ahead) is mapped copy-on-write from
        // the compiled component, not copied at each instantiation, however sparse it is, up
        // to the memory a rule may have anyway.
        config.memory_guaranteed_dense_image_size(limits.memory_bytes as u64);
        // A trap is reported by its kind and message; a backtrace of anonymous guest
        // functions would tell the operator nothing and costs time on every trap.
        config.wasm_backtrace_max_frames(None);
        // Profiling rules: `perf` names guest functions from the map this writes to
        // /tmp/perf-PID.map (rule components keep their function names unless stripped).
        if std::env::var_os(PERF_MAP_VARIABLE).is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| CompileError::Wasm {
            artifact: String::new(),
            stage: "creating the engine",
            message: error_text(&e),
        })?;
        // Rules import nothing but the contract's type-only interface: the linker holds an
        // empty instance for it, so any other import fails to link.
        let mut linker = Linker::new(&engine);
        for version in CONTRACT_VERSIONS {
            linker.instance(&format!("{TYPES_INTERFACE}{version}")).map_err(|e| CompileError::Wasm {
                artifact: String::new(),
                stage: "creating the linker",
                message: error_text(&e),
            })?;
        }
        let linker = Arc::new(linker);
        let ticker = limits::Ticker::start(engine.clone()).map_err(|e| CompileError::Wasm {
            artifact: String::new(),
            stage: "starting the deadline ticker",
            message: e.to_string(),
        })?;
        Ok(Self { engine, linker, limits: Arc::new(limits), enforce, cache: None, _ticker: Arc::new(ticker) })
    }

    /// The limits rules run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The cache of compiled components, if there is one.
    pub fn cache(&self) -> Option<&ComponentCache> {
        self.cache.as_ref()
    }

    /// Caches compiled components in `cache` (`None`: compile every time).
    #[must_use]
    pub fn with_cache(mut self, cache: Option<ComponentCache>) -> Self {
        self.cache = cache;
        self
    }

    /// Checks, compiles and describes the artifact `bytes`, named `artifact` in messages: a
    /// pack of one rule or many.
    pub fn compile(&self, artifact: &str, bytes: &[u8]) -> Result<CompiledPack, CompileError> {
        let name = || artifact.to_owned();
        if bytes.len() as u64 > self.limits.max_artifact_bytes {
            return Err(CompileError::TooLarge {
                artifact: name(),
                size: bytes.len() as u64,
                limit: self.limits.max_artifact_bytes,
            });
        }
        let info = artifact::inspect(bytes).map_err(|problem| CompileError::NotAComponent {
            artifact: name(),
            reason: match problem {
                artifact::ArtifactProblem::Malformed(reason) => reason,
                artifact::ArtifactProblem::NotAComponent => {
                    "a core module; wrap it with wit-component".into()
                }
            },
        })?;
        let found = info
            .contract_version
            .clone()
            .ok_or_else(|| CompileError::NoContractVersion { artifact: name() })?;
        let Some(contract) = artifact::implemented_contract(&found) else {
            return Err(CompileError::IncompatibleContract { artifact: name(), found });
        };
        let forbidden: Vec<String> =
            info.imports.iter().filter(|name| !name.starts_with(TYPES_INTERFACE)).cloned().collect();
        if !forbidden.is_empty() {
            return Err(CompileError::ForbiddenImport { artifact: name(), imports: forbidden });
        }
        let wasm_error = |stage| {
            move |e: wasmtime::Error| CompileError::Wasm { artifact: name(), stage, message: error_text(&e) }
        };
        let cached = self.cache.as_ref().and_then(|cache| cache.load(&self.engine, &info.digest));
        let component = match cached {
            Some(component) => component,
            None => {
                let component = Component::new(&self.engine, bytes).map_err(wasm_error("compiling"))?;
                if let Some(cache) = &self.cache {
                    cache.store(&self.engine, &info.digest, &component);
                }
                component
            }
        };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(wasm_error("linking"))?;
        let pre = RuleBindingsPre::new(contract, instance_pre).map_err(wasm_error("checking the exports"))?;
        // Instantiating runs the component's initializers (a core `start` function, the
        // `_initialize` that wit-component calls for C, TinyGo and Python toolchains): they
        // run under the load deadline and the fuel, like the call that follows.
        let mut store = new_store(&self.engine, &self.limits, self.enforce);
        arm(&mut store, &self.limits, self.limits.load_deadline_ticks())
            .map_err(wasm_error("setting fuel"))?;
        let deadline_text = |stage: &'static str| {
            let deadline = Duration::from_micros(self.limits.load_deadline_ticks() * TICK.as_micros() as u64);
            move |e: wasmtime::Error| CompileError::Wasm {
                artifact: name(),
                stage,
                message: explain_trap(&e, deadline),
            }
        };
        let bindings =
            pre.instantiate(&mut store).map_err(deadline_text("instantiating (running its initializers)"))?;
        arm(&mut store, &self.limits, self.limits.load_deadline_ticks())
            .map_err(wasm_error("setting fuel"))?;
        let members: Vec<RuleMetadata> =
            bindings.metadata(&mut store).map_err(deadline_text("calling metadata"))?;
        if members.is_empty() {
            return Err(CompileError::InvalidMetadata {
                artifact: name(),
                id: String::new(),
                problem: "the pack holds no rule".into(),
            });
        }
        if members.len() > crate::contract::bounds::PACK_RULES {
            return Err(CompileError::InvalidMetadata {
                artifact: name(),
                id: String::new(),
                problem: format!(
                    "the pack holds {} rules, more than the limit of {}",
                    members.len(),
                    crate::contract::bounds::PACK_RULES
                ),
            });
        }
        let mut ids = std::collections::HashSet::with_capacity(members.len());
        for metadata in &members {
            // The id is the guest's: cut to its bound so that the message stays bounded too.
            let shown_id: String = metadata.id.chars().take(crate::contract::bounds::ID_BYTES).collect();
            let invalid =
                |problem| CompileError::InvalidMetadata { artifact: name(), id: shown_id.clone(), problem };
            metadata.validate().map_err(|p| invalid(p.0))?;
            if !ids.insert(metadata.id.as_str()) {
                return Err(invalid("the pack declares this id twice".into()));
            }
        }
        let mut reads: Vec<Field> = members.iter().flat_map(|m| m.reads.iter().copied()).collect();
        reads.sort_unstable();
        reads.dedup();
        Ok(CompiledPack {
            artifact: name(),
            info,
            members,
            reads,
            engine: self.engine.clone(),
            limits: self.limits.clone(),
            enforce: self.enforce,
            signers: Vec::new(),
            pre,
        })
    }
}

/// Gives the next call (or instantiation) of `store` its deadline of `ticks` and its fuel.
fn arm(store: &mut Store<RuleState>, limits: &Limits, ticks: u64) -> wasmtime::Result<()> {
    store.set_epoch_deadline(ticks);
    if let Some(fuel) = limits.fuel {
        store.set_fuel(fuel)?;
    }
    Ok(())
}

/// An engine error in words, with a deadline of `deadline` named as such.
fn explain_trap(error: &wasmtime::Error, deadline: Duration) -> String {
    match classify(error) {
        FailureKind::Deadline => format!("the deadline of {} ms ran out", deadline.as_millis()),
        FailureKind::OutOfFuel => "the fuel ran out".into(),
        _ => error_text(error),
    }
}

/// A store under `limits`: a trap ends the call instead of the epoch being extended.
fn new_store(engine: &Engine, limits: &Limits, enforce: bool) -> Store<RuleState> {
    let mut store = Store::new(engine, RuleState::new(limits));
    if enforce {
        store.limiter(|state| state.limiter());
        store.epoch_deadline_trap();
    }
    store
}

/// The contract versions this host implements, for messages: `detect:rule@0.4.0,
/// detect:rule@0.3.0, detect:rule@0.2.0 and detect:rule@0.1.0`.
pub fn implemented_contracts() -> String {
    let names: Vec<String> = CONTRACT_VERSIONS.iter().map(|v| format!("{CONTRACT_PACKAGE}@{v}")).collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The text of an engine error with its causes, on one line.
fn error_text(error: &wasmtime::Error) -> String {
    format!("{error:#}")
}

/// A component compiled and ready to instantiate: a pack of one rule or many.
pub struct CompiledPack {
    artifact: String,
    info: ArtifactInfo,
    members: Vec<RuleMetadata>,
    /// The fields of every member, each once: what `evaluate` is sent.
    reads: Vec<Field>,
    engine: Engine,
    limits: Arc<Limits>,
    enforce: bool,
    signers: Vec<String>,
    pre: RuleBindingsPre,
}

impl std::fmt::Debug for CompiledPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPack")
            .field("artifact", &self.artifact)
            .field("rules", &self.members.len())
            .field("digest", &self.info.digest)
            .finish_non_exhaustive()
    }
}

impl CompiledPack {
    /// The artifact's name: its path, or `bundled:<name>`.
    pub fn artifact(&self) -> &str {
        &self.artifact
    }

    /// What its sections say: contract version, imports, exports, digest.
    pub fn info(&self) -> &ArtifactInfo {
        &self.info
    }

    /// The metadata of every rule, in the pack's order.
    pub fn members(&self) -> &[RuleMetadata] {
        &self.members
    }

    /// Records the trusted keys that signed the artifact.
    pub fn set_signers(&mut self, signers: Vec<String>) {
        self.signers = signers;
    }

    /// The limits the pack runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Each rule of the pack, as a rule of its own that shares the pack's code.
    pub fn into_rules(self) -> Vec<Arc<CompiledRule>> {
        let pack = Arc::new(self);
        (0..pack.members.len()).map(|member| Arc::new(CompiledRule { pack: pack.clone(), member })).collect()
    }

    /// A fresh instance with a store of its own.
    pub fn instantiate(self: &Arc<Self>) -> Result<RuleInstance, RuleError> {
        let (store, bindings) = self
            .new_store()
            .map_err(|message| self.error("instantiating", FailureKind::Instantiation, message))?;
        Ok(RuleInstance { pack: self.clone(), store, bindings, grown_for: 0, columns: Vec::new() })
    }

    fn new_store(&self) -> Result<(Store<RuleState>, RuleBindings), String> {
        let mut store = new_store(&self.engine, &self.limits, self.enforce);
        arm(&mut store, &self.limits, self.limits.deadline_ticks()).map_err(|e| error_text(&e))?;
        let bindings =
            self.pre.instantiate(&mut store).map_err(|e| explain_trap(&e, self.limits.deadline))?;
        Ok((store, bindings))
    }

    /// An error of the whole pack: named by its one rule, or by the artifact when it holds
    /// several.
    fn error(&self, stage: &'static str, kind: FailureKind, message: String) -> RuleError {
        let (id, version) = match self.members.as_slice() {
            [only] => (only.id.clone(), only.version.clone()),
            many => (format!("pack {}", self.artifact), format!("{} rules", many.len())),
        };
        RuleError { id, version, digest: self.info.digest.clone(), stage, kind, message }
    }

    fn member_error(
        &self,
        member: usize,
        stage: &'static str,
        kind: FailureKind,
        message: String,
    ) -> RuleError {
        let m = &self.members[member];
        RuleError {
            id: m.id.clone(),
            version: m.version.clone(),
            digest: self.info.digest.clone(),
            stage,
            kind,
            message,
        }
    }
}

/// One rule: of its pack's rules, the one at `member`.
pub struct CompiledRule {
    pack: Arc<CompiledPack>,
    member: usize,
}

impl std::fmt::Debug for CompiledRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRule")
            .field("artifact", &self.pack.artifact)
            .field("id", &self.metadata().id)
            .field("version", &self.metadata().version)
            .field("digest", &self.pack.info.digest)
            .finish_non_exhaustive()
    }
}

impl CompiledRule {
    /// The artifact's name: its path, or `bundled:<name>`.
    pub fn artifact(&self) -> &str {
        &self.pack.artifact
    }

    /// What the rule says about itself.
    pub fn metadata(&self) -> &RuleMetadata {
        &self.pack.members[self.member]
    }

    /// What its artifact's sections say: contract version, imports, exports, digest.
    pub fn info(&self) -> &ArtifactInfo {
        &self.pack.info
    }

    /// The sha256 of the artifact.
    pub fn digest(&self) -> &Digest {
        &self.pack.info.digest
    }

    /// The limits the rule runs under.
    pub fn limits(&self) -> &Limits {
        &self.pack.limits
    }

    /// The trusted keys that signed the artifact (empty when no policy was in force).
    pub fn signers(&self) -> &[String] {
        &self.pack.signers
    }

    /// The pack the rule belongs to.
    pub fn pack(&self) -> &Arc<CompiledPack> {
        &self.pack
    }

    /// The rule's index in its pack.
    pub fn member(&self) -> usize {
        self.member
    }

    /// Whether `other` is a rule of the same pack (the same compiled artifact).
    pub fn same_pack(&self, other: &CompiledRule) -> bool {
        Arc::ptr_eq(&self.pack, &other.pack)
    }

    /// Whether its contract lets the values of a column be shared (0.4.0 on): then what
    /// summarizing a window sends is known once it is packed
    /// ([`RuleInstance::pack_summary`]), and [`CompiledRule::summary_bytes`] would overstate it.
    pub fn shares_values(&self) -> bool {
        self.pack.pre.shares_values()
    }

    /// What summarizing `events` sends into the guest, in bytes, with their `summary-reads`
    /// one after another (contracts before 0.4.0), without packing them.
    pub fn summary_bytes<E: FieldValues>(&self, events: &[E]) -> usize {
        pack::apart_bytes(events, &self.metadata().summary_reads)
    }
}

/// A window's events packed for one rule's `summarize` call (see
/// [`RuleInstance::pack_summary`]).
#[derive(Debug)]
pub struct PackedSummary {
    pack: Arc<CompiledPack>,
    member: usize,
    count: usize,
    columns: Vec<pack::PackedColumn>,
}

impl PackedSummary {
    /// What the call sends into the guest, in bytes.
    pub fn guest_bytes(&self) -> usize {
        self.columns.iter().map(pack::PackedColumn::sent_bytes).sum()
    }
}

/// One alert row as a rule returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleAlert {
    /// The named columns, in the rule's order.
    pub columns: Vec<(String, AlertValue)>,
    /// The indices of the summarized events it covers.
    pub events: Vec<usize>,
}

/// The value of an alert column.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertValue {
    /// A string.
    Text(String),
    /// A list of strings.
    Texts(Vec<String>),
    /// A whole number.
    Number(i64),
}

/// Calls spent at most on one batch whose call failed, to find the events the failure is
/// theirs: enough to find three such events in a batch of 1,024 (each costs two calls per
/// halving), few enough that a rule that fails on every event costs 65 calls a batch until
/// it is quarantined.
pub const MAX_ISOLATING_CALLS: usize = 64;

/// Whether a failure may be some events' doing, and so worth finding by halves: not a
/// deadline or fuel (each retry would cost the whole budget again), nor an instantiation.
fn isolatable(kind: FailureKind) -> bool {
    !matches!(kind, FailureKind::Deadline | FailureKind::OutOfFuel | FailureKind::Instantiation)
}

/// [`RuleInstance::evaluate_isolating`] over a batch of `len` events for a pack of `members`
/// rules, with `call` evaluating the events of a range of the batch.
fn isolating(
    len: usize,
    members: usize,
    mut call: impl FnMut(std::ops::Range<usize>) -> Result<Vec<Vec<usize>>, RuleError>,
) -> Evaluation {
    let error = match call(0..len) {
        Ok(matched) => return Evaluation { matched, failure: None },
        Err(error) => error,
    };
    let mut matched = vec![Vec::new(); members];
    if len < 2 || !isolatable(error.kind) {
        let failure = Failure { error, events: len, first: 0 };
        return Evaluation { matched, failure: Some(failure) };
    }
    let mut failure: Option<Failure> = None;
    // The batch's own failure is the one told of, as it would be without the halving.
    let mut lose = |range: std::ops::Range<usize>| match &mut failure {
        Some(failure) => failure.events += range.len(),
        None => failure = Some(Failure { error: error.clone(), events: range.len(), first: range.start }),
    };
    let mut calls = 0;
    // Taken from the end: the earlier half first, so that indices come out ascending.
    let mut ranges = vec![len / 2..len, 0..len / 2];
    while let Some(range) = ranges.pop() {
        if calls == MAX_ISOLATING_CALLS {
            lose(range);
            continue;
        }
        calls += 1;
        match call(range.clone()) {
            Ok(found) => {
                for (all, found) in matched.iter_mut().zip(found) {
                    all.extend(found.into_iter().map(|i| i + range.start));
                }
            }
            Err(error) if range.len() == 1 || !isolatable(error.kind) => lose(range),
            Err(_) => {
                let middle = range.start + range.len() / 2;
                ranges.push(middle..range.end);
                ranges.push(range.start..middle);
            }
        }
    }
    // No part failed on its own (a failure of the batch's size): every event evaluated.
    Evaluation { matched, failure }
}

/// What one pack's `evaluate` gave over a batch (see [`RuleInstance::evaluate_isolating`]).
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// For each rule of the pack, the indices of the events it matched, ascending, among
    /// the events evaluated.
    pub matched: Vec<Vec<usize>>,
    /// The events that could not be evaluated, if any.
    pub failure: Option<Failure>,
}

/// Events of a batch a rule's calls failed on.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The failure of the call over the whole batch.
    pub error: RuleError,
    /// How many events were not evaluated.
    pub events: usize,
    /// The index of the first of them in the batch.
    pub first: usize,
}

/// What one rule gave over a batch: its matches, and the events its pack failed on.
#[derive(Debug, Clone)]
pub struct RuleOutcome {
    /// The indices of the events it matched, ascending.
    pub matched: Vec<usize>,
    /// The events that could not be evaluated, if any.
    pub failure: Option<Failure>,
}

/// A pack instantiated in a store of its own: one per pack per worker.
pub struct RuleInstance {
    pack: Arc<CompiledPack>,
    store: Store<RuleState>,
    bindings: RuleBindings,
    /// The input (bytes in the guest) of the `summarize` call that grew the memory past the
    /// limit, while the instance is kept for the next window (0: it did not grow).
    grown_for: usize,
    /// The columns of the last call, emptied and filled by the next: a call's columns are
    /// allocated once, not at every call (a large window's were tens of MB, each page new).
    columns: Vec<pack::PackedColumn>,
}

impl std::fmt::Debug for RuleInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleInstance").field("pack", &self.pack).finish_non_exhaustive()
    }
}

impl RuleInstance {
    /// The pack this instance runs.
    pub fn pack(&self) -> &Arc<CompiledPack> {
        &self.pack
    }

    /// The `where` stages of every rule of the pack over `events`: for each rule, in the
    /// pack's order, the indices of the events it matched, ascending.
    pub fn evaluate(&mut self, events: &[ProcessEvent]) -> Result<Vec<Vec<usize>>, RuleError> {
        // Grown by a window and not replaced when the windows closed (the replacement
        // failed then): replaced now. Columns are trimmed where windows close, not per batch.
        if self.grown_for > 0 {
            self.recycle().map_err(|e| self.pack.error("evaluate", FailureKind::Instantiation, e))?;
        }
        self.arm()?;
        // Batches of `evaluate` are sent with their values one after another: a batch of
        // process creations repeats few whole values, and finding them would cost more.
        let mut batch = pack::Batch::of(events, &self.pack.reads, std::mem::take(&mut self.columns), false);
        let result = self.bindings.evaluate(&mut self.store, &mut batch);
        self.columns = batch.columns;
        let returned = self.after_call("evaluate", result)?;
        let bad = |message: String| self.pack.error("evaluate", FailureKind::BadOutput, message);
        let mut matched: Vec<Vec<usize>> = vec![Vec::new(); self.pack.members.len()];
        let mut previous_rule: Option<u32> = None;
        for (rule, indices) in returned {
            if rule as usize >= matched.len() || previous_rule.is_some_and(|p| p >= rule) {
                return Err(bad(format!(
                    "returned matches of rule {rule} for a pack of {} rules (rules must be ascending, unique, in range)",
                    matched.len()
                )));
            }
            previous_rule = Some(rule);
            let mut previous: Option<u32> = None;
            for &index in &indices {
                if index as usize >= events.len() || previous.is_some_and(|p| p >= index) {
                    return Err(bad(format!(
                        "returned match index {index} for a batch of {} events (indices must be ascending, unique, in range)",
                        events.len()
                    )));
                }
                previous = Some(index);
            }
            matched[rule as usize] = indices.into_iter().map(|i| i as usize).collect();
        }
        Ok(matched)
    }

    /// [`RuleInstance::evaluate`], and if the call fails, the same over halves of the batch,
    /// halved again where they fail, so that a failure that is some events' doing (a rule
    /// that panics on one odd command line) loses those events only, not the batch beside
    /// them. At most [`MAX_ISOLATING_CALLS`] calls are spent on one batch, and a failure that
    /// costs its whole budget again at each call (a deadline, fuel) is not split.
    pub fn evaluate_isolating(&mut self, events: &[ProcessEvent]) -> Evaluation {
        let members = self.pack.members.len();
        isolating(events.len(), members, |range| self.evaluate(&events[range]))
    }

    /// The `summarize` stage of the pack's rule `member` over its matched events of one
    /// window, in time order.
    pub fn summarize<E: FieldValues>(
        &mut self,
        member: usize,
        window: (i64, i64),
        events: &[E],
    ) -> Result<Vec<RuleAlert>, RuleError> {
        let packed = self.pack_summary(member, events);
        self.summarize_packed(window, packed)
    }

    /// The matched events of one window packed for rule `member`'s `summarize` call, so that
    /// what the call sends is known before it is made. The columns are the instance's, lent
    /// until [`RuleInstance::summarize_packed`] gives them back.
    pub fn pack_summary<E: FieldValues>(&mut self, member: usize, events: &[E]) -> PackedSummary {
        let fields = &self.pack.members[member].summary_reads;
        let shared = self.pack.pre.shares_values();
        let batch = pack::Batch::for_summary(events, fields, std::mem::take(&mut self.columns), shared);
        PackedSummary { pack: self.pack.clone(), member, count: batch.count, columns: batch.columns }
    }

    /// [`RuleInstance::summarize`] over events this instance packed.
    pub fn summarize_packed(
        &mut self,
        window: (i64, i64),
        packed: PackedSummary,
    ) -> Result<Vec<RuleAlert>, RuleError> {
        assert!(Arc::ptr_eq(&packed.pack, &self.pack), "a window is summarized by the pack that packed it");
        self.arm()?;
        let PackedSummary { pack, member, count, columns } = packed;
        let fields = &pack.members[member].summary_reads;
        let mut batch = pack::Batch { count, fields, columns };
        let input = batch.guest_bytes();
        // Memory does not shrink: an instance that grew for a large window is replaced
        // before its next `evaluate` call or at the end of the windows closing together
        // (`Instances::release_grown`). Until then it summarizes the next windows, each
        // allowed what the large one was: noisy rules of one pack match the same events, and
        // a fresh instance grew again for each of their windows.
        self.store.data_mut().allow_input(input.max(self.grown_for));
        let result = self.bindings.summarize(&mut self.store, member as u32, window, &mut batch);
        self.columns = batch.columns;
        if self.store.data_mut().end_allowance() && result.is_ok() {
            self.grown_for = self.grown_for.max(input);
        }
        let alerts = self
            .after_call("summarize", result)
            .map_err(|mut e| pack.member_error(member, e.stage, e.kind, std::mem::take(&mut e.message)))?;
        let bad = |message: String| pack.member_error(member, "summarize", FailureKind::BadOutput, message);
        let limits = &pack.limits;
        let too_much =
            |message: String| pack.member_error(member, "summarize", FailureKind::TooMuchOutput, message);
        if alerts.len() > limits.max_alerts {
            return Err(too_much(format!(
                "returned {} alerts, more than the limit of {}",
                alerts.len(),
                limits.max_alerts
            )));
        }
        let bytes: usize = alerts
            .iter()
            .flat_map(|a| &a.columns)
            .map(|(name, value)| {
                name.len()
                    + match value {
                        AlertValue::Text(s) => s.len(),
                        AlertValue::Texts(v) => v.iter().map(String::len).sum(),
                        AlertValue::Number(_) => 8,
                    }
            })
            .sum();
        if bytes > limits.max_alert_bytes {
            return Err(too_much(format!(
                "returned {bytes} bytes of alerts, more than the limit of {}",
                limits.max_alert_bytes
            )));
        }
        alerts
            .into_iter()
            .map(|alert| {
                if let Some(&i) = alert.events.iter().find(|&&i| i as usize >= count) {
                    return Err(bad(format!("alert covers event {i} of a window of {count} events")));
                }
                Ok(RuleAlert {
                    columns: alert.columns,
                    events: alert.events.into_iter().map(|i| i as usize).collect(),
                })
            })
            .collect()
    }

    /// Gives the next call its deadline and fuel.
    fn arm(&mut self) -> Result<(), RuleError> {
        arm(&mut self.store, &self.pack.limits, self.pack.limits.deadline_ticks())
            .map_err(|e| self.pack.error("setting fuel", FailureKind::Instantiation, error_text(&e)))
    }

    /// Maps a call's trap to a [`RuleError`]. After a trap the guest may be left in any
    /// state (a lock held, memory half written), so its store is thrown away and the next
    /// call runs on a fresh instance.
    fn after_call<T>(&mut self, stage: &'static str, result: wasmtime::Result<T>) -> Result<T, RuleError> {
        result.map_err(|trap| {
            let kind = classify(&trap);
            let mut message = error_text(&trap);
            if kind == FailureKind::Deadline {
                message =
                    format!("the call ran past its deadline of {} ms", self.pack.limits.deadline.as_millis());
            }
            if let Err(e) = self.recycle() {
                message.push_str(&format!("; and re-instantiating failed: {e}"));
            }
            self.pack.error(stage, kind, message)
        })
    }

    /// Replaces the store with a fresh instance.
    fn recycle(&mut self) -> Result<(), String> {
        let (store, bindings) = self.pack.new_store().map_err(|e| e.to_string())?;
        self.store = store;
        self.bindings = bindings;
        self.grown_for = 0;
        Ok(())
    }

    /// Replaces the instance if a `summarize` call grew its memory past the limit, and
    /// frees columns grown past what a batch of events takes, so that it does not keep that
    /// memory.
    pub fn release_grown(&mut self) -> Result<(), String> {
        if self.column_bytes() > KEPT_COLUMN_BYTES {
            self.columns = Vec::new();
        }
        if self.grown_for > 0 { self.recycle() } else { Ok(()) }
    }

    /// The memory the kept columns hold.
    fn column_bytes(&self) -> usize {
        self.columns.iter().map(pack::PackedColumn::capacity_bytes).sum()
    }
}

/// The columns an instance keeps between calls at most (see [`RuleInstance::release_grown`]):
/// a batch of 1024 events with long command lines takes a few MiB.
const KEPT_COLUMN_BYTES: usize = 16 << 20;

/// One instance of each pack that `rules` come from, and where each rule is: what a worker
/// holds to evaluate a list of rules, calling each pack once per batch.
#[derive(Debug)]
pub struct Instances {
    instances: Vec<RuleInstance>,
    /// For each rule of the list, its pack's instance and its index in the pack.
    places: Vec<(usize, usize)>,
    /// For each instance, the rules of the list (by index) that are its pack's, and so which
    /// of them a call over a batch serves: computed once, not per batch.
    rules_of: Vec<Vec<usize>>,
}

impl Instances {
    /// Instantiates the packs of `rules`, each once.
    pub fn new(rules: &[Arc<CompiledRule>]) -> Result<Self, RuleError> {
        let mut instances: Vec<RuleInstance> = Vec::new();
        let mut places = Vec::with_capacity(rules.len());
        for rule in rules {
            let at = match instances.iter().position(|i| Arc::ptr_eq(&i.pack, &rule.pack)) {
                Some(at) => at,
                None => {
                    instances.push(rule.pack.instantiate()?);
                    instances.len() - 1
                }
            };
            places.push((at, rule.member));
        }
        let mut rules_of = vec![Vec::new(); instances.len()];
        for (rule, &(at, _)) in places.iter().enumerate() {
            rules_of[at].push(rule);
        }
        Ok(Self { instances, places, rules_of })
    }

    /// Evaluates `events` with every pack that has a rule `skip` does not name: for each rule,
    /// `None` if skipped, else its matches and its pack's failure on some of the events (see
    /// [`RuleInstance::evaluate_isolating`]).
    pub fn evaluate(
        &mut self,
        events: &[ProcessEvent],
        skip: impl Fn(usize) -> bool,
    ) -> Vec<Option<RuleOutcome>> {
        let mut results: Vec<Option<RuleOutcome>> = vec![None; self.places.len()];
        for (at, instance) in self.instances.iter_mut().enumerate() {
            let rules: Vec<usize> = self.rules_of[at].iter().copied().filter(|&r| !skip(r)).collect();
            if rules.is_empty() {
                continue;
            }
            let Evaluation { mut matched, failure } = instance.evaluate_isolating(events);
            for rule in rules {
                let matched = std::mem::take(&mut matched[self.places[rule].1]);
                results[rule] = Some(RuleOutcome { matched, failure: failure.clone() });
            }
        }
        results
    }

    /// Replaces the instances whose memory a `summarize` call grew past the limit (see
    /// [`RuleInstance::release_grown`]). One that cannot be replaced now is tried again
    /// before its next call, which reports the failure.
    pub fn release_grown(&mut self) {
        for instance in &mut self.instances {
            if let Err(error) = instance.release_grown() {
                tracing::warn!(pack = %instance.pack.artifact, error = %error, "replacing an instance grown by a window");
            }
        }
    }

    /// The instance of rule `rule`'s pack, and the rule's index in it.
    pub fn of(&mut self, rule: usize) -> (&mut RuleInstance, usize) {
        let (at, member) = self.places[rule];
        (&mut self.instances[at], member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::shared_evtx_process_creations;
    use crate::rules::BUNDLED_SOFT_CELL;

    /// A failure of `kind` of a stand-in pack's `evaluate`.
    fn stand_in_error(kind: FailureKind, message: String) -> RuleError {
        let digest = Digest::of(b"pack");
        RuleError { id: "r".into(), version: "1".into(), digest, stage: "evaluate", kind, message }
    }

    /// A pack of two rules over a batch of `len` events: the first matches the even events,
    /// the second every fifth; a call over a range holding a `failing` event fails with
    /// `kind`. Gives the evaluation and the calls made.
    fn isolated(
        len: usize,
        failing: &[usize],
        kind: FailureKind,
    ) -> (Evaluation, Vec<std::ops::Range<usize>>) {
        let mut calls = Vec::new();
        let evaluation = isolating(len, 2, |range| {
            calls.push(range.clone());
            if failing.iter().any(|f| range.contains(f)) {
                return Err(stand_in_error(kind, format!("failed over {range:?}")));
            }
            let of =
                |every: usize| range.clone().filter(|i| i % every == 0).map(|i| i - range.start).collect();
            Ok(vec![of(2), of(5)])
        });
        (evaluation, calls)
    }

    #[test]
    fn a_failed_batch_is_halved_down_to_the_events_that_fail() {
        let (evaluation, calls) = isolated(1024, &[3, 700], FailureKind::Unreachable);
        let failure = evaluation.failure.expect("a failure");
        assert_eq!((failure.events, failure.first), (2, 3));
        // The batch's own failure is the one told of.
        assert_eq!(failure.error.message, "failed over 0..1024");
        let kept = |every: usize| (0..1024).filter(|i| i % every == 0 && *i != 700).collect::<Vec<_>>();
        assert_eq!(evaluation.matched, [kept(2), kept(5)]);
        // The first call, its two halves (one bad event in each), then for each bad event
        // the two halves of each of the nine halvings from 512 events down to one.
        assert_eq!(calls.len(), 1 + 2 + 2 * 9 * 2);

        // Nothing failing: one call.
        let (evaluation, calls) = isolated(1024, &[], FailureKind::Trap);
        assert!(evaluation.failure.is_none());
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn halving_stops_at_its_budget_and_is_not_spent_on_deadlines() {
        // Every event fails: 64 calls past the first, the rest lost unsplit.
        let every: Vec<usize> = (0..1024).collect();
        let (evaluation, calls) = isolated(1024, &every, FailureKind::Trap);
        assert_eq!(calls.len(), 1 + MAX_ISOLATING_CALLS);
        assert_eq!(evaluation.failure.expect("a failure").events, 1024);
        assert!(evaluation.matched.iter().all(Vec::is_empty));
        // A deadline or fuel costs the whole budget again at every call: not split.
        for kind in [FailureKind::Deadline, FailureKind::OutOfFuel, FailureKind::Instantiation] {
            let (evaluation, calls) = isolated(1024, &[3], kind);
            assert_eq!(calls.len(), 1, "{kind}");
            assert_eq!(evaluation.failure.expect("a failure").events, 1024);
        }
        // A failure of the batch's size that its halves do not repeat loses nothing.
        let mut calls = 0;
        let evaluation = isolating(8, 1, |range| {
            calls += 1;
            if range.len() == 8 {
                return Err(stand_in_error(FailureKind::OutOfMemory, "too large".to_owned()));
            }
            Ok(vec![vec![0]])
        });
        assert!(evaluation.failure.is_none());
        assert_eq!((evaluation.matched, calls), (vec![vec![0, 4]], 3));
    }

    /// A window past the memory limit grows the instance, which then summarizes the next
    /// windows (smaller or as large) as a fresh instance would, and is replaced when asked,
    /// or before its next `evaluate` call.
    #[test]
    fn an_instance_grown_by_a_window_summarizes_the_next_as_a_fresh_one_until_replaced() {
        let limits = Limits { memory_bytes: 4 << 20, ..Limits::default() };
        let runtime = Runtime::with_limits(limits).expect("a runtime");
        let pack = Arc::new(runtime.compile("soft-cell", BUNDLED_SOFT_CELL).expect("Soft Cell compiles"));
        let real = shared_evtx_process_creations("");
        let large: Vec<&ProcessEvent> = real.iter().cycle().take(160 * real.len()).collect();
        let small = &large[..real.len()];
        let window = (0, i64::MAX);
        let fresh = |events: &[&ProcessEvent]| {
            pack.instantiate().expect("an instance").summarize(0, window, events).expect("summarized")
        };
        let mut kept = pack.instantiate().expect("an instance");
        let first = kept.summarize(0, window, &large).expect("a window past the limit is summarized");
        assert!(
            kept.grown_for > 0,
            "the window ({} events) did not grow the instance past 4 MiB",
            large.len()
        );
        assert_eq!(first, fresh(&large));
        assert_eq!(kept.summarize(0, window, small).expect("summarized"), fresh(small));
        assert_eq!(kept.summarize(0, window, &large).expect("summarized"), first);
        assert!(kept.grown_for > 0, "kept grown between windows");
        let held = kept.column_bytes();
        assert!(held > KEPT_COLUMN_BYTES, "the window's columns ({held} bytes) are kept until then");
        kept.release_grown().expect("replaced");
        assert_eq!(kept.grown_for, 0);
        assert!(kept.columns.is_empty(), "columns of a large window are not kept");
        kept.summarize(0, window, &large).expect("summarized");
        assert!(kept.grown_for > 0);
        kept.evaluate(&real).expect("evaluated");
        assert_eq!(kept.grown_for, 0, "replaced before an evaluate call");
    }
}
