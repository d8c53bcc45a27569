//! Rules: where they come from (files, directories, the bundled rule) and what they say
//! about themselves.

pub mod registry;
pub mod signing;
pub mod trust;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::contract::{self as metadata, EventSource, Indicator, Operator, RuleMetadata, Severity};
pub use trust::{Refusal, TrustPolicy};

use crate::runtime::{CompileError, CompiledRule, Digest, Runtime};
use crate::sigma::{self, SigmaError};

/// The Soft Cell rule component, built from `rules-wasm/soft-cell` with this binary.
pub const BUNDLED_SOFT_CELL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/soft-cell.wasm"));
/// The name the bundled rule is known by in messages.
pub const BUNDLED_SOFT_CELL_NAME: &str = "bundled:soft-cell";
/// The digest of the bundled rule, pinned when the binary was built: the bundled rule is
/// trusted by this digest rather than by a signature.
pub const BUNDLED_SOFT_CELL_DIGEST: &str = include_str!(concat!(env!("OUT_DIR"), "/soft-cell.sha256"));

/// A rule artifact (or a directory's Sigma rules) that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// It does not compile, or breaks the contract.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The artifact does not satisfy the trust policy.
    #[error("{artifact}: refused by the trust policy ({policy}): {reason}")]
    Untrusted {
        /// The artifact's name.
        artifact: String,
        /// Where the policy came from.
        policy: String,
        /// Why it was refused.
        reason: Refusal,
    },
    /// Sigma rules that could not be made into a pack.
    #[error("{0}")]
    Sigma(#[from] SigmaError),
    /// The Sigma pack could not be built.
    #[error("building the Sigma pack: {0}")]
    SigmaPack(#[from] crate::sigma::pack::PackError),
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

/// What loading requires of an artifact's signatures.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// The policy in force; `None` loads any artifact.
    pub policy: Option<TrustPolicy>,
    /// Under a policy, load artifacts with no signature at all (development only).
    pub allow_unsigned: bool,
}

impl Trust {
    /// Checks an artifact against the policy, if one is in force; returns the names of
    /// the trusted keys that signed it.
    pub fn check(&self, artifact: &Path, bytes: &[u8]) -> Result<Vec<String>, LoadError> {
        let Some(policy) = &self.policy else { return Ok(Vec::new()) };
        let name = artifact.display().to_string();
        let signature_path = signing::detached_signature_path(artifact);
        let detached =
            match crate::files::read_bounded(&signature_path, registry::layout::MAX_SIGNATURE_BYTES) {
                Ok(signature) => Some(signature),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(
                        CompileError::Io { artifact: signature_path.display().to_string(), source }.into()
                    );
                }
            };
        match policy.verify(bytes, detached.as_deref()) {
            Ok(signers) => Ok(signers),
            Err(Refusal::Unsigned) if self.allow_unsigned => Ok(Vec::new()),
            Err(reason) => {
                Err(LoadError::Untrusted { artifact: name, policy: policy.source().to_owned(), reason })
            }
        }
    }
}

/// Loads the rules at `paths`: component files, Sigma files (`.yml`, `.yaml`), and
/// directories, whose `*.wasm` files are loaded in name order and whose Sigma files (searched
/// recursively) are compiled. All the Sigma files together make one pack, evaluated once per
/// batch. Every component must satisfy `trust`; two rules with the same id are refused.
/// A Sigma rule the compiler refuses is passed to `refused` and left out.
pub fn load_paths_with(
    runtime: &Runtime,
    paths: &[PathBuf],
    trust: &Trust,
    refused: &mut dyn FnMut(&SigmaError),
) -> Result<Vec<Arc<CompiledRule>>, LoadError> {
    let mut files = Vec::new();
    let mut sigma_files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(rule_files_in(path)?);
            sigma_files.extend(
                sigma::files_under(path)
                    .map_err(|source| CompileError::Io { artifact: path.display().to_string(), source })?,
            );
        } else if sigma::is_sigma_file(path) {
            sigma_files.push(path.clone());
        } else {
            files.push(path.clone());
        }
    }
    let mut rules: Vec<Arc<CompiledRule>> = Vec::with_capacity(files.len());
    for file in files {
        let name = file.display().to_string();
        let io_error = |source| CompileError::Io { artifact: name.clone(), source };
        // Read no further than the limit, so a huge (or endless) file is not held.
        let limit = runtime.limits().max_artifact_bytes;
        let bytes = crate::files::read_bounded(&file, limit).map_err(io_error)?;
        if bytes.len() as u64 > limit {
            let size = std::fs::metadata(&file).map_or(bytes.len() as u64, |m| m.len());
            return Err(CompileError::TooLarge { artifact: name, size, limit }.into());
        }
        // The signature is checked before anything else reads the artifact.
        let signers = trust.check(&file, &bytes)?;
        let mut pack = runtime.compile(&name, &bytes)?;
        pack.set_signers(signers);
        add_rules(&mut rules, pack.into_rules())?;
    }
    if !sigma_files.is_empty() {
        add_rules(&mut rules, load_sigma(runtime, &sigma_files, trust, refused)?)?;
    }
    Ok(rules)
}

/// Where rules come from. Each gives its rules checked against the trust policy and
/// compiled; a Sigma rule that does not compile is left out and reported to `left_out`,
/// the others still load. A registry is one more source.
pub trait RuleSource {
    /// What the source is, for messages ("bundled:soft-cell", the paths).
    fn describe(&self) -> String;
    /// Loads its rules, in its order.
    fn load(
        &self,
        runtime: &Runtime,
        trust: &Trust,
        left_out: &mut dyn FnMut(&SigmaError),
    ) -> Result<Vec<Arc<CompiledRule>>, LoadError>;
}

/// The rule built into the binary.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bundled;

impl RuleSource for Bundled {
    fn describe(&self) -> String {
        BUNDLED_SOFT_CELL_NAME.to_owned()
    }

    fn load(
        &self,
        runtime: &Runtime,
        _: &Trust,
        _: &mut dyn FnMut(&SigmaError),
    ) -> Result<Vec<Arc<CompiledRule>>, LoadError> {
        Ok(vec![load_bundled(runtime)?])
    }
}

/// Rule files and directories (their components, and their Sigma files as one pack).
#[derive(Debug, Clone, Default)]
pub struct Paths(pub Vec<PathBuf>);

impl RuleSource for Paths {
    fn describe(&self) -> String {
        self.0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    fn load(
        &self,
        runtime: &Runtime,
        trust: &Trust,
        left_out: &mut dyn FnMut(&SigmaError),
    ) -> Result<Vec<Arc<CompiledRule>>, LoadError> {
        load_paths_with(runtime, &self.0, trust, left_out)
    }
}

/// [`load_paths_with`], refusing any Sigma rule that does not compile.
pub fn load_paths(
    runtime: &Runtime,
    paths: &[PathBuf],
    trust: &Trust,
) -> Result<Vec<Arc<CompiledRule>>, LoadError> {
    let mut first_refused: Option<String> = None;
    let rules = load_paths_with(runtime, paths, trust, &mut |e| {
        first_refused.get_or_insert_with(|| e.to_string());
    });
    if let Some(refused) = first_refused {
        return Err(CompileError::InvalidMetadata {
            artifact: "Sigma rules".into(),
            id: String::new(),
            problem: refused,
        }
        .into());
    }
    rules
}

/// Compiles `files` into one pack and loads it.
fn load_sigma(
    runtime: &Runtime,
    files: &[PathBuf],
    trust: &Trust,
    refused: &mut dyn FnMut(&SigmaError),
) -> Result<Vec<Arc<CompiledRule>>, LoadError> {
    let name = match files {
        [one] => one.display().to_string(),
        many => format!("sigma:{} files", many.len()),
    };
    // Sigma text carries no signature: under a policy it loads only as a signed pack.
    if let Some(policy) = &trust.policy
        && !trust.allow_unsigned
    {
        return Err(LoadError::Untrusted {
            artifact: name,
            policy: policy.source().to_owned(),
            reason: Refusal::Unsigned,
        });
    }
    let key = runtime.cache().and_then(|_| sigma::cache::key(files));
    if let Some(key) = &key
        && let Some(cached) = runtime.cache().and_then(|cache| sigma::cache::load(cache, key))
    {
        for error in &cached.refused {
            refused(error);
        }
        return Ok(runtime.compile(&name, &cached.pack)?.into_rules());
    }
    let compilation = sigma::compile_paths(files)?;
    for error in &compilation.refused {
        refused(error);
    }
    if compilation.rules.is_empty() {
        return Err(compilation.refused.into_iter().next().map_or_else(
            || {
                LoadError::from(CompileError::InvalidMetadata {
                    artifact: name.clone(),
                    id: String::new(),
                    problem: "no Sigma rule".into(),
                })
            },
            LoadError::Sigma,
        ));
    }
    let rules: Vec<_> = compilation.rules.into_iter().map(|(_, rule)| rule).collect();
    let bytes = sigma::pack::build_with_cache(&rules, runtime.cache())?;
    let loaded = runtime.compile(&name, &bytes)?.into_rules();
    if let (Some(key), Some(cache)) = (&key, runtime.cache()) {
        sigma::cache::store(cache, key, &bytes, &compilation.refused);
    }
    Ok(loaded)
}

fn add_rules(rules: &mut Vec<Arc<CompiledRule>>, new: Vec<Arc<CompiledRule>>) -> Result<(), LoadError> {
    // A pack's own ids are unique (the runtime checks); only ids across artifacts can meet.
    let taken: std::collections::HashMap<&str, &Arc<CompiledRule>> =
        rules.iter().map(|r| (r.metadata().id.as_str(), r)).collect();
    if let Some((rule, first)) = new.iter().find_map(|r| taken.get(r.metadata().id.as_str()).map(|f| (r, *f)))
    {
        return Err(LoadError::DuplicateId {
            id: rule.metadata().id.clone(),
            first: first.artifact().to_owned(),
            second: rule.artifact().to_owned(),
        });
    }
    rules.extend(new);
    Ok(())
}

/// Loads the rule bundled into this binary, trusted by its digest pinned at build time.
pub fn load_bundled(runtime: &Runtime) -> Result<Arc<CompiledRule>, LoadError> {
    let digest = Digest::of(BUNDLED_SOFT_CELL);
    if digest.as_str() != BUNDLED_SOFT_CELL_DIGEST.trim() {
        return Err(LoadError::Untrusted {
            artifact: BUNDLED_SOFT_CELL_NAME.into(),
            policy: "the digest pinned at build time".into(),
            reason: Refusal::BadSignature(format!(
                "digest {digest} is not the pinned {BUNDLED_SOFT_CELL_DIGEST}"
            )),
        });
    }
    Ok(runtime.compile(BUNDLED_SOFT_CELL_NAME, BUNDLED_SOFT_CELL)?.into_rules().remove(0))
}

/// The `*.wasm` files directly in `dir`, sorted by name.
fn rule_files_in(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    files_with_extension(dir, "wasm")
        .map_err(|source| CompileError::Io { artifact: dir.display().to_string(), source }.into())
}

/// The files directly in `dir` whose name ends with `.extension`, sorted by name.
pub(crate) fn files_with_extension(dir: &Path, extension: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == extension) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
