//! Rules: where they come from (files, directories, the bundled rule) and what they say
//! about themselves.

mod metadata;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use metadata::{EventSource, Indicator, Operator, RuleMetadata, Severity};

use crate::runtime::{CompiledRule, LoadError, Runtime};

/// The Soft Cell rule component, built from `rules-wasm/soft-cell` with this binary.
pub const BUNDLED_SOFT_CELL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/soft-cell.wasm"));
/// The name the bundled rule is known by in messages.
pub const BUNDLED_SOFT_CELL_NAME: &str = "bundled:soft-cell";

/// Loads the rules at `paths`: component files, or directories whose `*.wasm` files are
/// loaded in name order. Two rules with the same id are refused.
pub fn load_paths(runtime: &Runtime, paths: &[PathBuf]) -> Result<Vec<Arc<CompiledRule>>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(rule_files_in(path)?);
        } else {
            files.push(path.clone());
        }
    }
    let mut rules: Vec<Arc<CompiledRule>> = Vec::with_capacity(files.len());
    for file in files {
        let name = file.display().to_string();
        let bytes =
            std::fs::read(&file).map_err(|source| LoadError::Io { artifact: name.clone(), source })?;
        let rule = runtime.compile(&name, &bytes)?;
        if let Some(first) = rules.iter().find(|r| r.metadata().id == rule.metadata().id) {
            return Err(LoadError::DuplicateId {
                id: rule.metadata().id.clone(),
                first: first.artifact().to_owned(),
                second: name,
            });
        }
        rules.push(Arc::new(rule));
    }
    Ok(rules)
}

/// Loads the rule bundled into this binary.
pub fn load_bundled(runtime: &Runtime) -> Result<Arc<CompiledRule>, LoadError> {
    runtime.compile(BUNDLED_SOFT_CELL_NAME, BUNDLED_SOFT_CELL).map(Arc::new)
}

/// The `*.wasm` files directly in `dir`, sorted by name.
fn rule_files_in(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io_error = |source| LoadError::Io { artifact: dir.display().to_string(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "wasm") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
