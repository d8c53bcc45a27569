//! Compiled components cached on disk, so a host that starts again does not compile again.
//!
//! An entry is keyed by the artifact's sha256 and the engine's precompile-compatibility
//! hash (wasmtime's version and every setting that changes the machine code), and ends
//! with the sha256 of its own bytes: a stale, truncated or corrupt entry is a miss, never
//! an error, and is written anew.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::Digest;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    /// A cache in `dir` (created when the first entry is written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The user's cache directory: `$XDG_CACHE_HOME/rulehost/components`, else
    /// `~/.cache/rulehost/components`.
    pub fn default_dir() -> Option<PathBuf> {
        Some(crate::dirs::user_dir("XDG_CACHE_HOME", ".cache")?.join("components"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry of `artifact` compiled by `engine` lives.
    pub fn entry(&self, engine: &Engine, artifact: &Digest) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let hex = artifact.as_str().trim_start_matches("sha256:");
        self.dir.join(format!("{hex}-{:016x}.cwasm", hasher.finish()))
    }

    /// The cached component, if there is a sound entry.
    pub fn load(&self, engine: &Engine, artifact: &Digest) -> Option<Component> {
        let path = self.entry(engine, artifact);
        let bytes = std::fs::read(&path).ok()?;
        let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
        if Sha256::digest(body).as_slice() != sum {
            tracing::debug!(path = %path.display(), "cache entry does not match its checksum: a miss");
            return None;
        }
        deserialize(engine, body)
            .inspect_err(|e| tracing::debug!(path = %path.display(), "cache entry refused: {e}"))
            .ok()
    }

    /// Writes the entry of `artifact`; a failure only costs the next start a compilation.
    pub fn store(&self, engine: &Engine, artifact: &Digest, component: &Component) {
        let path = self.entry(engine, artifact);
        let written = component.serialize().map_err(|e| e.to_string()).and_then(|mut bytes| {
            let sum = Sha256::digest(&bytes);
            bytes.extend_from_slice(&sum);
            std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
            // Written aside, then renamed: a reader never sees half an entry.
            let aside = path.with_extension(format!("partial-{}", std::process::id()));
            std::fs::write(&aside, &bytes)
                .and_then(|()| std::fs::rename(&aside, &path))
                .map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            tracing::debug!(path = %path.display(), "cache entry not written: {e}");
        }
    }
}

impl ComponentCache {
    /// A cached file by name (other than compiled components: Sigma packs by the digest of
    /// their rule texts), if there is a sound entry.
    pub fn load_file(&self, name: &str) -> Option<Vec<u8>> {
        let mut bytes = std::fs::read(self.dir.join(name)).ok()?;
        let body_len = bytes.len().checked_sub(32)?;
        let (body, sum) = bytes.split_at(body_len);
        if Sha256::digest(body).as_slice() != sum {
            return None;
        }
        bytes.truncate(body_len);
        Some(bytes)
    }

    /// Writes a file by name, checksummed as components are; a failure only costs the next
    /// start the work the file saves.
    pub fn store_file(&self, name: &str, body: &[u8]) {
        let path = self.dir.join(name);
        let mut bytes = body.to_vec();
        bytes.extend_from_slice(&Sha256::digest(body));
        let aside = path.with_extension(format!("partial-{}", std::process::id()));
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&aside, &bytes))
            .and_then(|()| std::fs::rename(&aside, &path));
        if let Err(e) = written {
            tracing::debug!(path = %path.display(), "cache entry not written: {e}");
        }
    }
}

/// Deserializes a compiled component.
///
/// Loading machine code is unsafe: wasmtime cannot tell its own output from crafted
/// bytes. These bytes come from our cache directory and matched the checksum `store`
/// wrote, so a truncated or corrupted file never gets here; like wasmtime's own cache, the
/// directory is trusted as much as the binary (whoever can write it can write the user's
/// other files), and `--no-cache` turns it off.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: see above; the bytes are our own serialization, checked by its checksum.
    unsafe { Component::deserialize(engine, bytes) }
}
