//! Compiled components cached on disk, so a host that starts again does not compile again.
//!
//! An entry is keyed by the artifact's sha256 and the engine's precompile-compatibility
//! hash (wasmtime's version and every setting that changes the machine code), and ends
//! with the CRC-32 of its own bytes: a stale, truncated or corrupt entry is a miss, never
//! an error, and is written anew. (A checksum against damage, not a digest against an
//! attacker: the directory is trusted as the binary is, see [`deserialize_module`]. A pack's entry
//! holds its whole initial memory, and a sha256 of it took a fifth of a warm start.)

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

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
        self.dir.join(compiled_name(engine, artifact.as_str().trim_start_matches("sha256:")))
    }

    /// The cached component, if there is a sound entry.
    pub fn load(&self, engine: &Engine, artifact: &Digest) -> Option<Component> {
        let path = self.entry(engine, artifact);
        if !file_is_sealed(&path) {
            tracing::debug!(path = %path.display(), "no cache entry that matches its checksum: a miss");
            return None;
        }
        // Mapped, not read: a pack's initial memory is then mapped from the file as it is
        // touched, instead of copied into the process and again into an image of its own.
        deserialize_file(engine, &path)
            .inspect_err(|e| tracing::debug!(path = %path.display(), "cache entry refused: {e}"))
            .ok()
    }

    /// Writes the entry of `artifact`; a failure only costs the next start a compilation.
    pub fn store(&self, engine: &Engine, artifact: &Digest, component: &Component) {
        let path = self.entry(engine, artifact);
        let written = component.serialize().map_err(|e| e.to_string()).and_then(|mut bytes| {
            seal(&mut bytes);
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
        let body_len = unseal(&bytes)?.len();
        bytes.truncate(body_len);
        Some(bytes)
    }

    /// Writes a file by name, checksummed as components are; a failure only costs the next
    /// start the work the file saves.
    pub fn store_file(&self, name: &str, body: &[u8]) {
        let path = self.dir.join(name);
        let mut bytes = body.to_vec();
        seal(&mut bytes);
        let aside = path.with_extension(format!("partial-{}", std::process::id()));
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&aside, &bytes))
            .and_then(|()| std::fs::rename(&aside, &path));
        if let Err(e) = written {
            tracing::debug!(path = %path.display(), "cache entry not written: {e}");
        }
    }
}

impl ComponentCache {
    /// A compiled core module cached by name (the evaluator of Sigma packs, as their
    /// initialization runs it), if there is a sound entry for `engine`.
    pub fn load_module(&self, engine: &Engine, name: &str) -> Option<wasmtime::Module> {
        let bytes = self.load_file(&compiled_name(engine, name))?;
        deserialize_module(engine, &bytes).ok()
    }

    /// Writes the compiled core module `module` by name; a failure only costs a compilation.
    pub fn store_module(&self, engine: &Engine, name: &str, module: &wasmtime::Module) {
        if let Ok(bytes) = module.serialize() {
            self.store_file(&compiled_name(engine, name), &bytes);
        }
    }
}

/// The file of `name` compiled by `engine`: machine code is only for the engine settings
/// it was made with.
fn compiled_name(engine: &Engine, name: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{name}-{:016x}.cwasm", hasher.finish())
}

/// Appends the checksum of `bytes` to them.
fn seal(bytes: &mut Vec<u8>) {
    let sum = crc32fast::hash(bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
}

/// The body of sealed `bytes`, if their checksum matches it.
fn unseal(bytes: &[u8]) -> Option<&[u8]> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    (crc32fast::hash(body).to_le_bytes() == sum).then_some(body)
}

/// Whether the file at `path` ends with the checksum of what precedes it; read through one
/// small buffer.
fn file_is_sealed(path: &Path) -> bool {
    use std::io::Read as _;
    let sealed = || -> std::io::Result<bool> {
        let mut file = std::fs::File::open(path)?;
        let Some(mut body) = file.metadata()?.len().checked_sub(4) else { return Ok(false) };
        let (mut hasher, mut buffer) = (crc32fast::Hasher::new(), vec![0u8; 1 << 20]);
        while body > 0 {
            let take = buffer.len().min(usize::try_from(body).unwrap_or(usize::MAX));
            file.read_exact(&mut buffer[..take])?;
            hasher.update(&buffer[..take]);
            body -= take as u64;
        }
        let mut sum = [0u8; 4];
        file.read_exact(&mut sum)?;
        Ok(hasher.finalize().to_le_bytes() == sum)
    };
    sealed().unwrap_or(false)
}

/// Deserializes a compiled core module.
///
/// Loading machine code is unsafe: wasmtime cannot tell its own output from crafted
/// bytes. These bytes come from our cache directory and matched the checksum `store`
/// wrote, so a truncated or corrupted file never gets here; like wasmtime's own cache, the
/// directory is trusted as much as the binary (whoever can write it can write the user's
/// other files), and `--no-cache` turns it off.
#[allow(unsafe_code)]
fn deserialize_module(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<wasmtime::Module> {
    // SAFETY: see above; the bytes are our own serialization, checked by its checksum.
    unsafe { wasmtime::Module::deserialize(engine, bytes) }
}

/// Deserializes a compiled component, mapped from its file (see [`deserialize_module`]).
#[allow(unsafe_code)]
fn deserialize_file(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: see above; the file is our own serialization, checked by its checksum (the
    // checksum after it is past the end of the ELF image wasmtime reads). The file is
    // replaced only by a rename, never written in place, so the mapping stays as checked.
    unsafe { Component::deserialize_file(engine, path) }
}
