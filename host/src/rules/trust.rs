//! The trust policy: which signers an artifact needs before rulehost runs it.
//!
//! `--trust` takes public-key files, directories of them (`*.pub`), or one policy file in
//! TOML, modelled on Kubewarden's verification config:
//!
//! ```toml
//! [keys]                      # names for public-key files, relative to this file
//! platform = "keys/platform.pub"
//! secops = "keys/secops.pub"
//!
//! [require]
//! all_of = ["platform"]       # each of these must have signed
//! any_of = ["secops", "ci"]   # and at least `minimum` (default 1) of these
//! minimum = 1
//! ```
//!
//! Plain key files mean "any one of these keys".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wasmsign2::{PublicKey, PublicKeySet, WSError};

use super::signing::{self, SigningError};

/// A policy that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A key or policy file could not be read.
    #[error(transparent)]
    Key(#[from] SigningError),
    /// The policy file does not parse or names unknown keys.
    #[error("{path}: {reason}")]
    Policy {
        /// The policy file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// No key at all.
    #[error("--trust names no public key")]
    NoKeys,
}

/// Why an artifact was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No signature at all.
    #[error("unsigned (it carries no signature and none sits beside it as .sig)")]
    Unsigned,
    /// Signed, but by no key the policy knows.
    #[error("signed by unknown signer(s) {}", key_ids.join(", "))]
    UnknownSigner {
        /// The key ids of its signatures.
        key_ids: Vec<String>,
    },
    /// A signature that does not verify: the artifact changed after signing, or the
    /// signature itself is damaged.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// Good signatures, but not those the policy requires.
    #[error("too few signers: {}", describe_missing(signed, missing, *needed_any))]
    TooFewSigners {
        /// The trusted signers that did sign.
        signed: Vec<String>,
        /// The required signers that did not.
        missing: Vec<String>,
        /// How many more of the `any_of` keys were needed.
        needed_any: usize,
    },
}

fn describe_missing(signed: &[String], missing: &[String], needed_any: usize) -> String {
    let signed = if signed.is_empty() { "none".to_owned() } else { signed.join(", ") };
    let mut parts = vec![format!("signed by {signed}")];
    if !missing.is_empty() {
        parts.push(format!("missing {}", missing.join(", ")));
    }
    if needed_any > 0 {
        parts.push(format!("{needed_any} more of the any_of keys needed"));
    }
    parts.join("; ")
}

/// A named trusted key.
#[derive(Debug, Clone)]
struct TrustedKey {
    name: String,
    key: PublicKey,
}

impl TrustedKey {
    /// The key with the key id its signatures carry attached: wasmsign2 then accepts a
    /// signature only when its key id is that one (or absent, as in an anonymous signature).
    /// Without it, the key id is outside what is signed and any value verified: the bytes of
    /// a signed artifact (and so its digest) could change while it still verified.
    fn new(name: String, key: PublicKey) -> Self {
        Self { name, key: key.attach_default_key_id() }
    }
}

/// The trust policy in force.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    keys: Vec<TrustedKey>,
    all_of: Vec<String>,
    any_of: Vec<String>,
    minimum: usize,
    /// Where it came from, for messages.
    source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    keys: BTreeMap<String, PathBuf>,
    #[serde(default)]
    require: Requirement,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Requirement {
    #[serde(default)]
    all_of: Vec<String>,
    #[serde(default)]
    any_of: Vec<String>,
    minimum: Option<usize>,
}

impl TrustPolicy {
    /// Reads the policy from `--trust` arguments: key files, directories of `*.pub`, or
    /// one `.toml` policy file.
    pub fn load(paths: &[PathBuf]) -> Result<Self, TrustError> {
        if let [path] = paths
            && path.extension().is_some_and(|e| e == "toml")
        {
            return Self::from_policy_file(path);
        }
        let mut keys = Vec::new();
        for path in paths {
            let files = if path.is_dir() { public_key_files(path)? } else { vec![path.clone()] };
            for file in files {
                let name = file
                    .file_stem()
                    .map_or_else(|| file.display().to_string(), |s| s.to_string_lossy().into_owned());
                keys.push(TrustedKey::new(name, signing::load_public_key(&file)?));
            }
        }
        if keys.is_empty() {
            return Err(TrustError::NoKeys);
        }
        let any_of = keys.iter().map(|k| k.name.clone()).collect();
        let source = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        Ok(Self { keys, all_of: Vec::new(), any_of, minimum: 1, source })
    }

    fn from_policy_file(path: &Path) -> Result<Self, TrustError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SigningError::Io { path: path.display().to_string(), source })?;
        Self::from_policy_text(path, &text)
    }

    /// The policy in `text`, the TOML of the policy file at `path` (key files are relative
    /// to its directory).
    pub fn from_policy_text(path: &Path, text: &str) -> Result<Self, TrustError> {
        let policy_error = |reason: String| TrustError::Policy { path: path.display().to_string(), reason };
        let file: PolicyFile = toml::from_str(text).map_err(|e| policy_error(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let keys = file
            .keys
            .iter()
            .map(|(name, key)| Ok(TrustedKey::new(name.clone(), signing::load_public_key(&base.join(key))?)))
            .collect::<Result<Vec<_>, TrustError>>()?;
        if keys.is_empty() {
            return Err(TrustError::NoKeys);
        }
        let Requirement { all_of, mut any_of, minimum } = file.require;
        for name in all_of.iter().chain(&any_of) {
            if !file.keys.contains_key(name) {
                return Err(policy_error(format!(
                    "the requirement names key {name:?}, which [keys] does not define"
                )));
            }
        }
        if all_of.is_empty() && any_of.is_empty() {
            any_of = keys.iter().map(|k| k.name.clone()).collect();
        }
        let minimum = if any_of.is_empty() { 0 } else { minimum.unwrap_or(1) };
        if minimum > any_of.len() {
            return Err(policy_error(format!(
                "minimum {minimum} is more than the {} any_of keys",
                any_of.len()
            )));
        }
        Ok(Self { keys, all_of, any_of, minimum, source: path.display().to_string() })
    }

    /// Where the policy came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Checks `artifact` (with its `detached` signature, if any) against the policy and
    /// returns the names of the trusted keys that signed it.
    pub fn verify(&self, artifact: &[u8], detached: Option<&[u8]>) -> Result<Vec<String>, Refusal> {
        let set = PublicKeySet::new(self.keys.iter().map(|k| k.key.clone()).collect());
        let verified = match set.verify(&mut &artifact[..], detached) {
            Ok(verified) => verified,
            Err(WSError::NoSignatures) => return Err(Refusal::Unsigned),
            Err(WSError::VerificationFailed) => return Err(self.explain_failure(artifact, detached)),
            Err(other) => {
                return Err(Refusal::BadSignature(format!("the signature cannot be read ({other})")));
            }
        };
        let signed: Vec<String> =
            self.keys.iter().filter(|k| verified.contains(&k.key)).map(|k| k.name.clone()).collect();
        if signed.is_empty() {
            return Err(self.explain_failure(artifact, detached));
        }
        let missing: Vec<String> = self.all_of.iter().filter(|n| !signed.contains(n)).cloned().collect();
        let any = self.any_of.iter().filter(|n| signed.contains(n)).count();
        let needed_any = self.minimum.saturating_sub(any);
        if !missing.is_empty() || needed_any > 0 {
            return Err(Refusal::TooFewSigners { signed, missing, needed_any });
        }
        Ok(signed)
    }

    /// No signature verified: either a trusted key's signature is there and broken, or
    /// only strangers signed.
    fn explain_failure(&self, artifact: &[u8], detached: Option<&[u8]>) -> Refusal {
        let key_ids = signing::signature_key_ids(artifact, detached);
        let trusted: Vec<&TrustedKey> =
            self.keys.iter().filter(|k| key_ids.contains(&signing::key_id(&k.key))).collect();
        match trusted.first() {
            Some(key) => Refusal::BadSignature(format!(
                "the signature by {} does not match the artifact: it was changed after signing",
                key.name
            )),
            None if key_ids.is_empty() => Refusal::BadSignature("no signature verifies".into()),
            None => Refusal::UnknownSigner { key_ids },
        }
    }
}

/// The `*.pub` files directly in `dir`, sorted.
fn public_key_files(dir: &Path) -> Result<Vec<PathBuf>, TrustError> {
    super::files_with_extension(dir, "pub")
        .map_err(|source| SigningError::Io { path: dir.display().to_string(), source }.into())
}
