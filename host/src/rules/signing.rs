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
    #[error("{path}: not an Ed25519 {kind} key (PEM, DER, OpenSSH or wasmsign2's raw form): {reason}")]
    KeyFormat {
        /// The file.
        path: String,
        /// `secret` or `public`.
        kind: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// A key that cannot be written in the format asked for.
    #[error("{path}: {reason}")]
    Export {
        /// The key file.
        path: String,
        /// Why.
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
/// written) and `dir/name.pub`; `dir` is created (mode 0700, as `~/.ssh`) when missing.
/// Existing files are never overwritten.
pub fn generate_key(dir: &Path, name: &str) -> Result<GeneratedKey, SigningError> {
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io_error(dir))?;
    }
    let secret = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    for path in [&secret, &public] {
        if path.exists() {
            return Err(SigningError::KeyExists { path: path.display().to_string() });
        }
    }
    let pair = KeyPair::generate();
    write_key_file(&secret, pair.sk.to_pem().as_bytes(), true)?;
    write_key_file(&public, pair.pk.to_pem().as_bytes(), false)?;
    let key_id = key_id(&pair.pk);
    Ok(GeneratedKey { secret, public, key_id })
}

/// The key id signatures by `key` carry: wasmsign2's default, an HMAC of the key.
pub fn key_id(key: &PublicKey) -> String {
    let with_id = key.clone().attach_default_key_id();
    with_id.key_id().map(hex::encode).unwrap_or_default()
}

/// The forms a key file can take: each is read wherever a key is read, and written by
/// `rulehost key export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// PEM (PKCS#8 for a secret key, SPKI for a public one): what `rulehost key generate`
    /// and `openssl genpkey -algorithm ed25519` write.
    Pem,
    /// The same in DER.
    Der,
    /// wasmsign2's own raw form (a type byte, then the key): what `wasmsign2 keygen` writes
    /// and its `-k` / `-K` read without `-Z`.
    Wasmsign2,
    /// OpenSSH (`ssh-ed25519 AAAA...`), for public keys: what `ssh-keygen -t ed25519`,
    /// GitHub's `.keys` and `wasmsign2 -Z` use. OpenSSH secret keys are read but written
    /// only by `ssh-keygen`.
    Openssh,
}

impl std::str::FromStr for KeyFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pem" => Ok(Self::Pem),
            "der" => Ok(Self::Der),
            "wasmsign2" => Ok(Self::Wasmsign2),
            "openssh" => Ok(Self::Openssh),
            other => Err(format!("unknown key format {other:?} (pem, der, wasmsign2 or openssh)")),
        }
    }
}

/// A key file of either kind.
#[derive(Debug, Clone)]
pub enum AnyKey {
    /// A secret key (its file was checked to be private).
    Secret(SecretKey),
    /// A public key.
    Public(PublicKey),
}

/// Reads a public or a secret key, in any [`KeyFormat`].
pub fn load_any_key(path: &Path) -> Result<AnyKey, SigningError> {
    let bytes = fs::read(path).map_err(io_error(path))?;
    if let Ok(key) = PublicKey::from_any(&bytes) {
        return Ok(AnyKey::Public(key));
    }
    load_secret_key(path).map(AnyKey::Secret)
}

/// `key` written in `format`: its public half when `public` (or when it is a public key).
/// Secret keys are written only in the forms wasmsign2 can write too (PEM, DER, raw).
pub fn export_key(
    path: &Path,
    key: &AnyKey,
    format: KeyFormat,
    public: bool,
) -> Result<Vec<u8>, SigningError> {
    let public_key = match key {
        AnyKey::Public(key) => Some(key.clone()),
        AnyKey::Secret(secret) if public => Some(public_key_of(secret)),
        AnyKey::Secret(_) => None,
    };
    match (public_key, key) {
        (Some(key), _) => Ok(match format {
            KeyFormat::Pem => key.to_pem().into_bytes(),
            KeyFormat::Der => key.to_der(),
            KeyFormat::Wasmsign2 => key.to_bytes(),
            KeyFormat::Openssh => openssh_public_key(&key).into_bytes(),
        }),
        (None, AnyKey::Secret(secret)) => match format {
            KeyFormat::Pem => Ok(secret.to_pem().into_bytes()),
            KeyFormat::Der => Ok(secret.to_der()),
            KeyFormat::Wasmsign2 => Ok(secret.to_bytes()),
            KeyFormat::Openssh => Err(SigningError::Export {
                path: path.display().to_string(),
                reason: "rulehost reads OpenSSH secret keys but does not write them (use ssh-keygen); \
                         --public writes the public half in OpenSSH form"
                    .into(),
            }),
        },
        (None, AnyKey::Public(_)) => unreachable!("a public key always has its public half"),
    }
}

/// `ssh-ed25519 <base64 of the SSH wire encoding> rulehost`, as `authorized_keys` holds it.
fn openssh_public_key(key: &PublicKey) -> String {
    use base64::Engine as _;
    const KIND: &[u8] = b"ssh-ed25519";
    let raw: &[u8] = key.pk.as_ref();
    let mut wire = Vec::with_capacity(4 + KIND.len() + 4 + raw.len());
    for part in [KIND, raw] {
        wire.extend_from_slice(&(part.len() as u32).to_be_bytes());
        wire.extend_from_slice(part);
    }
    format!("ssh-ed25519 {} rulehost\n", base64::engine::general_purpose::STANDARD.encode(wire))
}

/// Writes a key file: never over an existing file, and a secret key with mode 0600 from
/// the start.
pub fn write_key_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), SigningError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    let mut file = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => SigningError::KeyExists { path: path.display().to_string() },
        _ => SigningError::Io { path: path.display().to_string(), source },
    })?;
    file.write_all(bytes).map_err(io_error(path))
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
