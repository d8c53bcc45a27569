//! The WebAssembly runtime: one engine, rules compiled once, and an instance (with its own
//! store) per rule per worker.

pub mod artifact;
mod bindings;
mod pack;

use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

pub use artifact::{ArtifactInfo, CONTRACT_PACKAGE, CONTRACT_VERSION, Digest};
use bindings::{RuleBindings, RuleBindingsPre, wit};

use crate::events::ProcessEvent;
use crate::rules::RuleMetadata;

/// The contract's interface of types, the one import a rule may have (it holds no
/// functions); followed by the version.
const TYPES_INTERFACE: &str = "detect:rule/types@";

/// What a rule's store holds for it. Rules import nothing, so nothing yet.
#[derive(Debug, Default)]
pub struct RuleState {}

/// A rule artifact that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{artifact}: {source}")]
    Io {
        /// The artifact's name.
        artifact: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
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
        "{artifact}: built against contract {CONTRACT_PACKAGE}@{found}, this host implements {CONTRACT_PACKAGE}@{CONTRACT_VERSION}"
    )]
    IncompatibleContract {
        /// The artifact's name.
        artifact: String,
        /// The version the rule declares.
        found: String,
    },
    /// Imports something the host does not provide.
    #[error("{artifact}: imports `{import}`, but rules may import nothing but the contract's types")]
    ForbiddenImport {
        /// The artifact's name.
        artifact: String,
        /// The first import refused.
        import: String,
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
    /// Two artifacts declare the same rule id.
    #[error("rule id {id:?} is declared by both {first} and {second}")]
    DuplicateId {
        /// The id.
        id: String,
        /// The artifact loaded first.
        first: String,
        /// The artifact refused.
        second: String,
    },
}

/// A rule call that failed: a trap, or output that breaks the contract.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rule {id} {version} ({digest}): {stage}: {message}")]
pub struct RuleError {
    /// The rule's id.
    pub id: String,
    /// The rule's version.
    pub version: String,
    /// The artifact's digest.
    pub digest: Digest,
    /// The call that failed.
    pub stage: &'static str,
    /// What happened.
    pub message: String,
}

/// The engine and linker that every rule is compiled and instantiated with.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<RuleState>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime with rulehost's engine settings.
    pub fn new() -> Result<Self, LoadError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Rule calls are synchronous; the async machinery made each call ~4x dearer.
        config.concurrency_support(false);
        let engine = Engine::new(&config).map_err(|e| LoadError::Wasm {
            artifact: String::new(),
            stage: "creating the engine",
            message: error_text(&e),
        })?;
        // Rules import nothing but the contract's type-only interface: the linker holds an
        // empty instance for it, so any other import fails to link.
        let mut linker = Linker::new(&engine);
        linker.instance(&format!("{TYPES_INTERFACE}{CONTRACT_VERSION}")).map_err(|e| LoadError::Wasm {
            artifact: String::new(),
            stage: "creating the linker",
            message: error_text(&e),
        })?;
        let linker = Arc::new(linker);
        Ok(Self { engine, linker })
    }

    /// Checks, compiles and describes the artifact `bytes`, named `artifact` in messages.
    pub fn compile(&self, artifact: &str, bytes: &[u8]) -> Result<CompiledRule, LoadError> {
        let name = || artifact.to_owned();
        let info = artifact::inspect(bytes).map_err(|problem| LoadError::NotAComponent {
            artifact: name(),
            reason: match problem {
                artifact::ArtifactProblem::Malformed(reason) => reason,
                artifact::ArtifactProblem::NotAComponent => {
                    "a core module; wrap it with wit-component".into()
                }
            },
        })?;
        let found =
            info.contract_version.clone().ok_or_else(|| LoadError::NoContractVersion { artifact: name() })?;
        if !artifact::is_compatible(&found) {
            return Err(LoadError::IncompatibleContract { artifact: name(), found });
        }
        if let Some(import) = info.imports.iter().find(|name| !name.starts_with(TYPES_INTERFACE)) {
            return Err(LoadError::ForbiddenImport { artifact: name(), import: import.clone() });
        }
        let wasm_error = |stage| {
            move |e: wasmtime::Error| LoadError::Wasm { artifact: name(), stage, message: error_text(&e) }
        };
        let component = Component::new(&self.engine, bytes).map_err(wasm_error("compiling"))?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(wasm_error("linking"))?;
        let pre = RuleBindingsPre::new(instance_pre).map_err(wasm_error("checking the exports"))?;
        let mut store = Store::new(&self.engine, RuleState::default());
        let bindings = pre.instantiate(&mut store).map_err(wasm_error("instantiating"))?;
        let metadata: RuleMetadata =
            bindings.call_metadata(&mut store).map_err(wasm_error("calling metadata"))?.into();
        validate_metadata(&metadata).map_err(|problem| LoadError::InvalidMetadata {
            artifact: name(),
            id: metadata.id.clone(),
            problem,
        })?;
        Ok(CompiledRule { artifact: name(), info, metadata, engine: self.engine.clone(), pre })
    }
}

fn validate_metadata(m: &RuleMetadata) -> Result<(), String> {
    if m.id.trim().is_empty() {
        return Err("empty id".into());
    }
    if m.version.trim().is_empty() {
        return Err("empty version".into());
    }
    if m.reads.is_empty() {
        return Err("reads no field".into());
    }
    Ok(())
}

/// The text of an engine error with its causes, on one line.
fn error_text(error: &wasmtime::Error) -> String {
    format!("{error:#}")
}

/// A rule compiled and ready to instantiate.
pub struct CompiledRule {
    artifact: String,
    info: ArtifactInfo,
    metadata: RuleMetadata,
    engine: Engine,
    pre: RuleBindingsPre<RuleState>,
}

impl std::fmt::Debug for CompiledRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRule")
            .field("artifact", &self.artifact)
            .field("id", &self.metadata.id)
            .field("version", &self.metadata.version)
            .field("digest", &self.info.digest)
            .finish_non_exhaustive()
    }
}

impl CompiledRule {
    /// The artifact's name: its path, or `bundled:<name>`.
    pub fn artifact(&self) -> &str {
        &self.artifact
    }

    /// What the rule says about itself.
    pub fn metadata(&self) -> &RuleMetadata {
        &self.metadata
    }

    /// What its sections say: contract version, imports, exports, digest.
    pub fn info(&self) -> &ArtifactInfo {
        &self.info
    }

    /// The sha256 of the artifact.
    pub fn digest(&self) -> &Digest {
        &self.info.digest
    }

    /// A fresh instance with a store of its own.
    pub fn instantiate(self: &Arc<Self>) -> Result<RuleInstance, RuleError> {
        let (store, bindings) = self.new_store().map_err(|message| self.error("instantiating", message))?;
        Ok(RuleInstance { rule: self.clone(), store, bindings })
    }

    fn new_store(&self) -> Result<(Store<RuleState>, RuleBindings), String> {
        let mut store = Store::new(&self.engine, RuleState::default());
        let bindings = self.pre.instantiate(&mut store).map_err(|e| error_text(&e))?;
        Ok((store, bindings))
    }

    fn error(&self, stage: &'static str, message: String) -> RuleError {
        RuleError {
            id: self.metadata.id.clone(),
            version: self.metadata.version.clone(),
            digest: self.info.digest.clone(),
            stage,
            message,
        }
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

/// A rule instantiated in a store of its own: one per rule per worker.
pub struct RuleInstance {
    rule: Arc<CompiledRule>,
    store: Store<RuleState>,
    bindings: RuleBindings,
}

impl std::fmt::Debug for RuleInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleInstance").field("rule", &self.rule).finish_non_exhaustive()
    }
}

impl RuleInstance {
    /// The rule this instance runs.
    pub fn rule(&self) -> &Arc<CompiledRule> {
        &self.rule
    }

    /// The `where` stages over `events`: the indices of those that match, ascending.
    pub fn evaluate(&mut self, events: &[ProcessEvent]) -> Result<Vec<usize>, RuleError> {
        let batch = pack::pack(events, &self.rule.metadata.reads);
        let result = self.bindings.call_evaluate(&mut self.store, &batch);
        let indices = self.after_call("evaluate", result)?;
        let mut previous: Option<u32> = None;
        for &index in &indices {
            if index as usize >= events.len() || previous.is_some_and(|p| p >= index) {
                let message = format!(
                    "returned match index {index} for a batch of {} events (indices must be ascending, unique, in range)",
                    events.len()
                );
                return Err(self.rule.error("evaluate", message));
            }
            previous = Some(index);
        }
        Ok(indices.into_iter().map(|i| i as usize).collect())
    }

    /// The `summarize` stage over the matched events of one window, in time order.
    pub fn summarize(
        &mut self,
        window: (i64, i64),
        events: &[ProcessEvent],
    ) -> Result<Vec<RuleAlert>, RuleError> {
        let batch = pack::pack(events, &self.rule.metadata.summary_reads);
        let window = wit::Window { start_ms: window.0, end_ms: window.1 };
        let result = self.bindings.call_summarize(&mut self.store, window, &batch);
        let alerts = self.after_call("summarize", result)?;
        alerts
            .into_iter()
            .map(|alert| {
                if let Some(&bad) = alert.events.iter().find(|&&i| i as usize >= events.len()) {
                    let message = format!("alert covers event {bad} of a window of {} events", events.len());
                    return Err(self.rule.error("summarize", message));
                }
                Ok(RuleAlert {
                    columns: alert
                        .columns
                        .into_iter()
                        .map(|c| {
                            let value = match c.value {
                                wit::Value::Text(s) => AlertValue::Text(s),
                                wit::Value::Texts(v) => AlertValue::Texts(v),
                                wit::Value::Number(n) => AlertValue::Number(n),
                            };
                            (c.name, value)
                        })
                        .collect(),
                    events: alert.events.into_iter().map(|i| i as usize).collect(),
                })
            })
            .collect()
    }

    /// Maps a call's trap to a [`RuleError`]. After a trap the guest may be left in any
    /// state (a lock held, memory half written), so its store is thrown away and the next
    /// call runs on a fresh instance.
    fn after_call<T>(&mut self, stage: &'static str, result: wasmtime::Result<T>) -> Result<T, RuleError> {
        result.map_err(|trap| {
            let mut message = error_text(&trap);
            match self.rule.new_store() {
                Ok((store, bindings)) => {
                    self.store = store;
                    self.bindings = bindings;
                }
                Err(e) => message.push_str(&format!("; and re-instantiating failed: {e}")),
            }
            self.rule.error(stage, message)
        })
    }
}
