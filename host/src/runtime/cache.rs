//! Compiled components cached on disk, so a host that starts again does not compile again.
//!
//! An entry is keyed by the artifact's sha256 and the engine's precompile-compatibility
//! hash (wasmtime's version and every setting that changes the machine code), and ends
//! with the CRC-32 of its own bytes: a stale, truncated or corrupt entry is a miss, never
//! an error, and is written anew. (A checksum against damage, not a digest against an
//! attacker: the directory is trusted as the binary is, see [`deserialize_module`]. A pack's entry
//! holds its whole initial memory, and a sha256 of it took a fifth of a warm start.)
//!
//! The directory is bounded ([`ComponentCache::with_max_bytes`], 1 GiB by default): every
//! Sigma rule set compiles to entries of its own (the catalog's, 31 MB), and a host that
//! swaps rule packs for months would fill its disk. Writing an entry removes the entries
//! used longest ago until the directory is back under the bound; using one marks it (its
//! modification time), so the rules a host runs stay while those it replaced go. Removing an
//! entry that another process has mapped is safe: its mapping keeps the file's pages.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::Digest;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
    max_bytes: u64,
}

/// The default bound of a cache directory: about thirty compiled versions of the Sigma
/// catalog, where wasmtime's own cache keeps 512 MiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 1 << 30;

/// How old a file written aside (`*.partial-PID`) must be to be taken for the leftover of
/// a process that stopped while writing it, and removed.
const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

impl ComponentCache {
    /// A cache in `dir` (created when the first entry is written), bounded to
    /// [`DEFAULT_CACHE_MAX_BYTES`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), max_bytes: DEFAULT_CACHE_MAX_BYTES }
    }

    /// The cache, with its directory bounded to `max_bytes` (an entry larger than that is
    /// still written, and the others removed).
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The bound of the directory, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
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
        let component = deserialize_file(engine, &path)
            .inspect_err(|e| tracing::debug!(path = %path.display(), "cache entry refused: {e}"))
            .ok()?;
        mark_used(&path);
        Some(component)
    }

    /// Writes the entry of `artifact`; a failure only costs the next start a compilation.
    pub fn store(&self, engine: &Engine, artifact: &Digest, component: &Component) {
        let path = self.entry(engine, artifact);
        match component.serialize() {
            Ok(bytes) => self.write_sealed(&path, bytes),
            Err(e) => tracing::debug!(path = %path.display(), "cache entry not written: {e}"),
        }
    }

    /// Writes `bytes` sealed with their checksum at `path`, aside first and then renamed (a
    /// reader never sees half an entry), and keeps the directory within its bound.
    fn write_sealed(&self, path: &Path, mut bytes: Vec<u8>) {
        seal(&mut bytes);
        let aside = path.with_extension(format!("partial-{}", std::process::id()));
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&aside, &bytes))
            .and_then(|()| std::fs::rename(&aside, path));
        match written {
            Ok(()) => self.trim(path),
            Err(e) => tracing::debug!(path = %path.display(), "cache entry not written: {e}"),
        }
    }

    /// Removes the entries used longest ago until the directory holds at most the bound,
    /// `kept` (the entry just written) aside, and leftovers of writes that never ended.
    /// Entries are only ever removed: a failure leaves the directory larger, never broken.
    fn trim(&self, kept: &Path) {
        let Ok(listing) = std::fs::read_dir(&self.dir) else { return };
        let now = std::time::SystemTime::now();
        let mut entries: Vec<(std::time::SystemTime, u64, PathBuf)> = Vec::new();
        let mut total = 0u64;
        for entry in listing.flatten() {
            let Ok(metadata) = entry.metadata() else { continue };
            if !metadata.is_file() {
                continue;
            }
            let (path, used) = (entry.path(), metadata.modified().unwrap_or(now));
            let aside = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.starts_with("partial-"));
            if aside {
                if now.duration_since(used).is_ok_and(|age| age > LEFTOVER_AGE) {
                    remove(&path);
                }
                continue;
            }
            total += metadata.len();
            if path != kept {
                entries.push((used, metadata.len(), path));
            }
        }
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if remove(&path) {
                total -= len;
            }
        }
    }
}

/// Marks the entry at `path` used now: [`ComponentCache::trim`] removes the entries used
/// longest ago first.
fn mark_used(path: &Path) {
    let marked = std::fs::File::options()
        .append(true)
        .open(path)
        .and_then(|file| file.set_modified(std::time::SystemTime::now()));
    if let Err(e) = marked {
        tracing::debug!(path = %path.display(), "cache entry not marked used: {e}");
    }
}

/// Removes a cache file; whether it is gone.
fn remove(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "cache entry removed to keep the cache within its bound");
            true
        }
        Err(e) => {
            tracing::debug!(path = %path.display(), "cache entry not removed: {e}");
            e.kind() == std::io::ErrorKind::NotFound
        }
    }
}

impl ComponentCache {
    /// A cached file by name (other than compiled components: Sigma packs by the digest of
    /// their rule texts), if there is a sound entry.
    pub fn load_file(&self, name: &str) -> Option<Vec<u8>> {
        let path = self.dir.join(name);
        let mut bytes = std::fs::read(&path).ok()?;
        let body_len = unseal(&bytes)?.len();
        bytes.truncate(body_len);
        mark_used(&path);
        Some(bytes)
    }

    /// Writes a file by name, checksummed as components are; a failure only costs the next
    /// start the work the file saves.
    pub fn store_file(&self, name: &str, body: &[u8]) {
        self.write_sealed(&self.dir.join(name), body.to_vec());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// Sets the time an entry was last used (its modification time).
    fn used_at(path: &Path, at: SystemTime) {
        std::fs::File::options().append(true).open(path).unwrap().set_modified(at).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_entries_used_longest_ago_go_first_when_the_directory_passes_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        // Room for three entries of 100 KiB (each sealed with its 4-byte checksum).
        let cache = ComponentCache::new(dir.path()).with_max_bytes(3 * (100 << 10) + 12);
        let body = vec![7u8; 100 << 10];
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for (n, name) in ["a", "b", "c"].iter().enumerate() {
            cache.store_file(name, &body);
            used_at(&dir.path().join(name), an_hour_ago + Duration::from_secs(n as u64));
        }
        // A subfolder (the registry's store) is not the cache's to trim.
        std::fs::create_dir(dir.path().join("oci")).unwrap();
        std::fs::write(dir.path().join("oci").join("blob"), vec![0u8; 1 << 20]).unwrap();
        assert_eq!(names(dir.path()), ["a", "b", "c", "oci"]);
        // "a" is used again: "b" is now the one used longest ago.
        assert_eq!(cache.load_file("a").as_deref(), Some(&body[..]));
        cache.store_file("d", &body);
        assert_eq!(names(dir.path()), ["a", "c", "d", "oci"]);
        // An entry larger than the bound is written, and every other entry goes.
        cache.store_file("e", &vec![1u8; 400 << 10]);
        assert_eq!(names(dir.path()), ["e", "oci"]);
        assert_eq!(cache.load_file("e").map(|b| b.len()), Some(400 << 10));
        assert_eq!(std::fs::read_dir(dir.path().join("oci")).unwrap().count(), 1);
    }

    #[test]
    fn a_write_left_half_done_is_removed_once_it_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ComponentCache::new(dir.path());
        let (old, recent) = (dir.path().join("x.partial-123"), dir.path().join("y.partial-456"));
        std::fs::write(&old, b"half").unwrap();
        std::fs::write(&recent, b"half").unwrap();
        used_at(&old, SystemTime::now() - 2 * LEFTOVER_AGE);
        cache.store_file("z", b"whole");
        // The recent one may be another process's write under way.
        assert_eq!(names(dir.path()), ["y.partial-456", "z"]);
    }
}
