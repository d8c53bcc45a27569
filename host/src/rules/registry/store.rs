//! The local content-addressed store of pulled artifacts (under the cache directory): blobs
//! by digest, the digest each tag last had, and each artifact's signature. Every blob is
//! checked against its digest when it is read back, so a store copied to an air-gapped host,
//! or changed on disk, gives the bytes that were pulled or nothing.

use std::io;
use std::path::{Path, PathBuf};

use super::layout::{is_sha256, sha256};
use super::reference::Reference;

/// A store at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store at `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        is_sha256(digest).then(|| self.dir.join("blobs").join("sha256").join(&digest[7..]))
    }

    /// The blob of `digest`, if it is here and its bytes still have that digest.
    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let bytes = std::fs::read(&path).ok()?;
        if sha256(&bytes) == digest {
            Some(bytes)
        } else {
            tracing::warn!(path = %path.display(), "a stored blob does not match its digest: removed");
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// Keeps `bytes` under their digest, which is returned.
    pub fn put_blob(&self, bytes: &[u8]) -> io::Result<String> {
        let digest = sha256(bytes);
        let path = self.blob_path(&digest).expect("a computed digest is well formed");
        if !path.exists() {
            write_atomically(&path, bytes)?;
        }
        Ok(digest)
    }

    fn tag_path(&self, reference: &Reference) -> Option<PathBuf> {
        let tag = reference.tag.as_ref()?;
        // Host and repository were checked when parsed: no separators but '/', no '..'.
        Some(
            self.dir
                .join("tags")
                .join(reference.registry.replace(':', "_"))
                .join(&reference.repository)
                .join(tag),
        )
    }

    /// The manifest digest `reference`'s tag had when last pulled.
    pub fn tag(&self, reference: &Reference) -> Option<String> {
        read_digest(self.tag_path(reference)?)
    }

    /// Records that `reference`'s tag points at `digest`.
    pub fn set_tag(&self, reference: &Reference, digest: &str) -> io::Result<()> {
        self.tag_path(reference).map_or(Ok(()), |path| write_digest(&path, digest))
    }

    fn signature_path(&self, manifest: &str) -> Option<PathBuf> {
        is_sha256(manifest).then(|| self.dir.join("signatures").join(&manifest[7..]))
    }

    /// The digest of the signature blob found for the artifact of manifest `manifest`.
    pub fn signature(&self, manifest: &str) -> Option<String> {
        read_digest(self.signature_path(manifest)?)
    }

    /// Records the signature blob of the artifact of manifest `manifest`.
    pub fn set_signature(&self, manifest: &str, signature: &str) -> io::Result<()> {
        self.signature_path(manifest).map_or(Ok(()), |path| write_digest(&path, signature))
    }

    /// Writes an artifact where the loaders read it: `rules/<manifest hex>/<name>.wasm`, with
    /// its detached signature beside it as `<name>.wasm.sig` when it has one.
    pub fn materialize(
        &self,
        manifest: &str,
        name: &str,
        wasm: &[u8],
        signature: Option<&[u8]>,
    ) -> io::Result<PathBuf> {
        let dir = self.dir.join("rules").join(manifest.trim_start_matches("sha256:"));
        let path = dir.join(format!("{name}.wasm"));
        write_atomically(&path, wasm)?;
        let signature_path = crate::rules::signing::detached_signature_path(&path);
        match signature {
            Some(signature) => write_atomically(&signature_path, signature)?,
            None => match std::fs::remove_file(&signature_path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
        }
        Ok(path)
    }
}

/// The well-formed digest a file of the store holds, if any.
fn read_digest(path: PathBuf) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let digest = text.trim();
    is_sha256(digest).then(|| digest.to_owned())
}

fn write_digest(path: &Path, digest: &str) -> io::Result<()> {
    write_atomically(path, format!("{digest}\n").as_bytes())
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a reader never
/// sees a part of it.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("store paths have a parent");
    std::fs::create_dir_all(dir)?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.part", std::process::id()));
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_come_back_only_with_the_bytes_of_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let digest = store.put_blob(b"rule bytes").unwrap();
        assert_eq!(store.blob(&digest).as_deref(), Some(&b"rule bytes"[..]));
        let path = dir.path().join("blobs/sha256").join(&digest[7..]);
        std::fs::write(&path, b"changed").unwrap();
        assert_eq!(store.blob(&digest), None);
        assert!(!path.exists());
        let reference = Reference::parse("oci://127.0.0.1:5000/a/b:v1").unwrap();
        assert_eq!(store.tag(&reference), None);
        store.set_tag(&reference, &digest).unwrap();
        assert_eq!(store.tag(&reference), Some(digest.clone()));
        assert_eq!(store.tag(&reference.at_tag("v2")), None);
        assert_eq!(store.blob("sha256:../../x"), None);
    }
}
