//! Signing rule artifacts in the WebAssembly tool-conventions signature format, through the
//! `wasmsign2` crate: Ed25519, the signature in a custom section at the front of the
//! component (or detached), several signers per artifact. The signature covers every
//! section of the component, the metadata and the contract version among them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmsign2::{KeyPair, Module, PublicKey, SecretKey, WSError};

/// A key file, a signature or an artifact that signing could not handle.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A secret key file that others may read.
    #[error("{path}: a secret key readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    KeyPermissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A file that is not a key of the expected kind.
    #[error("{path}: not an Ed25519 {kind} key (PEM, DER or wasmsign2's raw form): {reason}")]
    KeyFormat {
        /// The file.
        path: String,
        /// `secret` or `public`.
        kind: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// A key file that exists already.
    #[error("{path}: exists already; not overwriting a key")]
    KeyExists {
        /// The file.
        path: String,
    },
    /// The artifact or signature could not be processed.
    #[error("{artifact}: {reason}")]
    Signature {
        /// The artifact.
        artifact: String,
        /// What `wasmsign2` said.
        reason: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SigningError + '_ {
    move |source| SigningError::Io { path: path.display().to_string(), source }
}

/// A key pair's files, as `rulehost key generate` writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// The secret key (PEM, mode 0600).
    pub secret: PathBuf,
    /// The public key (PEM).
    pub public: PathBuf,
    /// The key id the signatures carry, in hex.
    pub key_id: String,
}

/// Generates a key pair into `dir/name.key` (created with mode 0600, before any secret is
/// written) and `dir/name.pub`. Existing files are never overwritten.
pub fn generate_key(dir: &Path, name: &str) -> Result<GeneratedKey, SigningError> {
    let secret = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    for path in [&secret, &public] {
        if path.exists() {
            return Err(SigningError::KeyExists { path: path.display().to_string() });
        }
    }
    let pair = KeyPair::generate();
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&secret).map_err(io_error(&secret))?;
    file.write_all(pair.sk.to_pem().as_bytes()).map_err(io_error(&secret))?;
    fs::write(&public, pair.pk.to_pem()).map_err(io_error(&public))?;
    let key_id = key_id(&pair.pk);
    Ok(GeneratedKey { secret, public, key_id })
}

/// The key id signatures by `key` carry: wasmsign2's default, an HMAC of the key.
pub fn key_id(key: &PublicKey) -> String {
    let with_id = key.clone().attach_default_key_id();
    with_id.key_id().map(hex::encode).unwrap_or_default()
}

/// Reads a secret key, refusing a file that others may read.
pub fn load_secret_key(path: &Path) -> Result<SecretKey, SigningError> {
    let metadata = fs::metadata(path).map_err(io_error(path))?;
    #[cfg(unix)]
    {
        let mode = std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777;
        if mode & 0o077 != 0 {
            return Err(SigningError::KeyPermissions { path: path.display().to_string(), mode });
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    let bytes = fs::read(path).map_err(io_error(path))?;
    SecretKey::from_any(&bytes).map_err(|e| SigningError::KeyFormat {
        path: path.display().to_string(),
        kind: "secret",
        reason: e.to_string(),
    })
}

/// Reads a public key.
pub fn load_public_key(path: &Path) -> Result<PublicKey, SigningError> {
    let bytes = fs::read(path).map_err(io_error(path))?;
    PublicKey::from_any(&bytes).map_err(|e| SigningError::KeyFormat {
        path: path.display().to_string(),
        kind: "public",
        reason: e.to_string(),
    })
}

/// The public half of a secret key.
pub fn public_key_of(secret: &SecretKey) -> PublicKey {
    PublicKey { pk: secret.sk.public_key(), key_id: None }
}

/// Signs `artifact`. Embedded, the signature joins any already there (several signers);
/// detached, the artifact is unchanged and the signature is returned apart.
pub fn sign(
    name: &str,
    artifact: &[u8],
    key: &SecretKey,
    detached: bool,
) -> Result<(Vec<u8>, Option<Vec<u8>>), SigningError> {
    let error = |e: WSError| SigningError::Signature { artifact: name.to_owned(), reason: e.to_string() };
    let module = Module::deserialize(&mut &artifact[..]).map_err(error)?;
    let key_id = public_key_of(key).attach_default_key_id().key_id().cloned();
    let (signed, signature) = key.sign_multi(module, key_id.as_ref(), detached, false).map_err(error)?;
    if detached {
        return Ok((artifact.to_vec(), Some(signature)));
    }
    let mut out = Vec::with_capacity(artifact.len() + 256);
    signed.serialize(&mut out).map_err(error)?;
    Ok((out, None))
}

/// The key ids of the signatures on `artifact` (or in `detached`), without verifying
/// them; empty when unsigned.
pub fn signature_key_ids(artifact: &[u8], detached: Option<&[u8]>) -> Vec<String> {
    let info = match detached {
        Some(signature) => wasmsign2::signature_info_from_detached(signature),
        None => wasmsign2::signature_info_from_reader(&mut &artifact[..], None),
    };
    info.map(|info| info.key_ids().iter().map(hex::encode).collect()).unwrap_or_default()
}

/// The detached signature that sits beside `artifact` (`rule.wasm.sig`), if any.
pub fn detached_signature_path(artifact: &Path) -> PathBuf {
    let mut name = artifact.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}
