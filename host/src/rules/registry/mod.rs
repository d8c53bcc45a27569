//! Rules in OCI registries: push a component (and its detached signature, as a referrer of
//! its manifest), pull one by tag or pinned by digest into the local store, and tell the
//! digest a tag has now, so that `run` can follow it.
//!
//! The requests go through [`distribution`], which reads every answer under a bound (a
//! registry is as hostile as any input). It is async; its runtime is a current-thread tokio
//! runtime that lives inside [`Registry`], so the evaluation path never meets it. Everything
//! a registry sends is checked before it is kept: the manifest against a pinned digest and
//! against the Wasm artifact layout, the layer against the manifest's digest and size, the
//! signature's manifest against its own layout. The trust policy is applied when the
//! artifact is loaded, from the store, before anything else reads it (as for a file).

pub mod auth;
mod distribution;
pub mod follow;
pub mod layout;
pub mod reference;
pub mod store;

use std::io;
use std::path::PathBuf;

use self::auth::Credentials;
use self::distribution::{Distribution, Failure};
use self::layout::{
    Descriptor, INDEX_MEDIA_TYPE, Index, MANIFEST_MEDIA_TYPE, MAX_SIGNATURE_BYTES, Manifest,
    SIGNATURE_ARTIFACT_TYPE, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE,
};
pub use self::reference::{Reference, is_reference};
pub use self::store::Store;

/// What a registry operation failed on.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference does not parse.
    #[error("{reference}: not a registry reference: {reason}")]
    Reference {
        /// As given.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// What the registry sent is not an artifact rulehost reads, or does not match its digest.
    #[error("{reference}: refused: {reason}")]
    Refused {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The registry could not be reached, or answered with an error.
    #[error("registry {registry}: {reason}")]
    Transport {
        /// `host[:port]`.
        registry: String,
        /// What happened (never a secret).
        reason: String,
    },
    /// The registry refused the credentials.
    #[error("registry {registry}: access to {repository} denied {credentials}: {reason}")]
    Unauthorized {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// Who asked (the user name, never the secret).
        credentials: String,
        /// What the registry said.
        reason: String,
    },
    /// `--offline`, and the store does not hold the artifact.
    #[error("{reference}: not in the local store ({store}), and --offline keeps rulehost off the network")]
    Offline {
        /// The reference.
        reference: String,
        /// The store's directory.
        store: String,
    },
    /// The credentials could not be read.
    #[error("registry {registry}: credentials: {reason}")]
    Credentials {
        /// `host[:port]`.
        registry: String,
        /// What is wrong (a file name, never its contents).
        reason: String,
    },
    /// The store could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// How rulehost talks to registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// The local store's directory.
    pub store_dir: PathBuf,
    /// Use only what the store holds.
    pub offline: bool,
    /// Hosts (`host[:port]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// PEM files of certificate authorities trusted besides the system's.
    pub ca_files: Vec<PathBuf>,
    /// The largest layer pulled (the sandbox's artifact limit).
    pub max_artifact_bytes: u64,
    /// How long one request of a pull may take in all, its answer read to the end.
    pub request_timeout: std::time::Duration,
}

/// [`RegistryOptions::request_timeout`]'s default: a 64 MiB layer at 220 KB/s.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// An artifact pulled into the store.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// What was asked for.
    pub reference: Reference,
    /// Its manifest's digest.
    pub manifest: String,
    /// The component in the store, with its detached signature beside it when it has one.
    pub path: PathBuf,
    /// Whether a signature was found.
    pub signed: bool,
    /// Whether the network was used.
    pub fetched: bool,
    /// Why signatures the registry lists were not taken (or could not be listed): for the
    /// operator to see, since the trust policy will only see that there is none.
    pub signature_problems: Vec<String>,
}

/// What `push` sends besides the component.
#[derive(Debug, Clone, Default)]
pub struct PushRequest {
    /// The component's exports and imports, for the config.
    pub exports: Vec<String>,
    /// Its imports.
    pub imports: Vec<String>,
    /// The world it targets (`detect:rule/rule@0.2.0`).
    pub target: Option<String>,
    /// Manifest annotations.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// A detached signature, pushed as a referrer.
    pub signature: Option<Vec<u8>>,
}

/// What `push` wrote.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The manifest's digest.
    pub manifest: String,
    /// The signature manifest's digest, when one was pushed.
    pub signature: Option<String>,
}

/// A connection to registries, and the store.
pub struct Registry {
    options: RegistryOptions,
    store: Store,
    session: std::sync::OnceLock<Result<Session, String>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("options", &self.options).finish_non_exhaustive()
    }
}

struct Session {
    runtime: tokio::runtime::Runtime,
    distribution: Distribution,
}

impl Registry {
    /// A registry client with `options`; nothing is contacted until needed.
    pub fn new(options: RegistryOptions) -> Self {
        let store = Store::new(options.store_dir.clone());
        Registry { options, store, session: std::sync::OnceLock::new() }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn session(&self, registry: &str) -> Result<&Session, RegistryError> {
        let session = self.session.get_or_init(|| {
            let distribution = Distribution::new(
                self.options.insecure.clone(),
                &self.options.ca_files,
                self.options.request_timeout,
            )?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("the network runtime: {e}"))?;
            Ok(Session { runtime, distribution })
        });
        session.as_ref().map_err(|reason| RegistryError::Transport {
            registry: registry.to_owned(),
            reason: reason.clone(),
        })
    }

    /// The session, and the credentials for `reference`'s registry.
    fn connect(&self, reference: &Reference) -> Result<(&Session, Credentials), RegistryError> {
        let session = self.session(&reference.registry)?;
        let credentials = auth::credentials_for(&reference.registry)
            .map_err(|reason| RegistryError::Credentials { registry: reference.registry.clone(), reason })?;
        Ok((session, credentials))
    }

    /// Pulls `reference` into the store (a pinned reference already there, or anything with
    /// `--offline`, without the network) and writes its component where the loaders read it.
    pub fn pull(&self, reference: &Reference) -> Result<Pulled, RegistryError> {
        let offline = || RegistryError::Offline {
            reference: reference.to_string(),
            store: self.store.dir().display().to_string(),
        };
        if let Some(digest) = &reference.digest {
            // A pinned artifact never changes: the store's copy is it. Only a signature
            // missing from the store is looked for again.
            if let Some(pulled) = self.stored(reference, digest)?
                && (pulled.signed || self.options.offline)
            {
                return Ok(pulled);
            }
        } else if self.options.offline {
            let digest = self.store.tag(reference).ok_or_else(offline)?;
            return self.stored(reference, &digest)?.ok_or_else(offline);
        }
        if self.options.offline {
            return Err(offline());
        }
        self.fetch(reference)
    }

    /// The artifact of manifest `digest` from the store alone, if it holds all of it.
    fn stored(&self, reference: &Reference, digest: &str) -> Result<Option<Pulled>, RegistryError> {
        let Some(manifest) = self.store.blob(digest) else { return Ok(None) };
        let (_, layer) = layout::wasm_layer(&manifest).map_err(|reason| refused(reference, reason))?;
        let Some(wasm) = self.store.blob(&layer.digest) else { return Ok(None) };
        let signature = self.store.signature(digest).and_then(|d| self.store.blob(&d));
        let path = self
            .store
            .materialize(digest, reference.name(), &wasm, signature.as_deref())
            .map_err(|source| self.io_error(source))?;
        Ok(Some(Pulled {
            reference: reference.clone(),
            manifest: digest.to_owned(),
            path,
            signed: signature.is_some(),
            fetched: false,
            signature_problems: Vec::new(),
        }))
    }

    fn io_error(&self, source: io::Error) -> RegistryError {
        RegistryError::Io { path: self.store.dir().display().to_string(), source }
    }

    /// Fetches the manifest, the layer and the signature of `reference`, checks them, and
    /// keeps them in the store.
    fn fetch(&self, reference: &Reference) -> Result<Pulled, RegistryError> {
        let (session, credentials) = self.connect(reference)?;
        let distribution = &session.distribution;
        let failed = |failure| registry_error(reference, &credentials, failure);
        let (manifest_bytes, layer, wasm, (signature, signature_problems)) =
            session.runtime.block_on(async {
                let bytes = distribution
                    .manifest(reference, &credentials, MANIFEST_MEDIA_TYPE)
                    .await
                    .map_err(failed)?;
                let digest = layout::sha256(&bytes);
                if let Some(pinned) = &reference.digest
                    && *pinned != digest
                {
                    return Err(refused(
                        reference,
                        format!("the registry sent a manifest of digest {digest}"),
                    ));
                }
                let (_, layer) = layout::wasm_layer(&bytes).map_err(|reason| refused(reference, reason))?;
                if layer.size > self.options.max_artifact_bytes {
                    return Err(refused(
                        reference,
                        format!(
                            "the layer is {} bytes; the artifact limit is {}",
                            layer.size, self.options.max_artifact_bytes
                        ),
                    ));
                }
                let wasm = distribution
                    .blob(reference, &credentials, &layer.digest, layer.size)
                    .await
                    .map_err(|failure| match failure {
                        Failure::Denied(_) => failed(failure),
                        Failure::NotFound(reason) | Failure::Refused(reason) | Failure::Transport(reason) => {
                            refused(reference, format!("the layer {}: {reason}", layer.digest))
                        }
                    })?;
                let signature =
                    fetch_signature(distribution, &credentials, &reference.at_digest(&digest)).await;
                Ok((bytes, layer, wasm, signature))
            })?;
        if layout::sha256(&wasm) != layer.digest || wasm.len() as u64 != layer.size {
            return Err(refused(reference, format!("the layer does not match its digest {}", layer.digest)));
        }
        let store_error = |source| self.io_error(source);
        let digest = self.store.put_blob(&manifest_bytes).map_err(store_error)?;
        self.store.put_blob(&wasm).map_err(store_error)?;
        if let Some(signature) = &signature {
            let signature_digest = self.store.put_blob(signature).map_err(store_error)?;
            self.store.set_signature(&digest, &signature_digest).map_err(store_error)?;
        }
        if reference.tag.is_some() && reference.digest.is_none() {
            self.store.set_tag(reference, &digest).map_err(store_error)?;
        }
        let path = self
            .store
            .materialize(&digest, reference.name(), &wasm, signature.as_deref())
            .map_err(store_error)?;
        Ok(Pulled {
            reference: reference.clone(),
            manifest: digest,
            path,
            signed: signature.is_some(),
            fetched: true,
            signature_problems,
        })
    }

    /// The manifest digest `reference` names now (asks the registry for a tag, as the
    /// registry states it; offline, the store).
    pub fn current_digest(&self, reference: &Reference) -> Result<String, RegistryError> {
        if let Some(digest) = &reference.digest {
            return Ok(digest.clone());
        }
        if self.options.offline {
            // Offline, the tag is what the store last saw.
            return self.store.tag(reference).ok_or_else(|| RegistryError::Offline {
                reference: reference.to_string(),
                store: self.store.dir().display().to_string(),
            });
        }
        let (session, credentials) = self.connect(reference)?;
        // A HEAD request: the manifest itself is fetched (and its digest checked) only by
        // the pull of a digest that changed.
        session
            .runtime
            .block_on(session.distribution.manifest_digest(reference, &credentials))
            .map_err(|failure| registry_error(reference, &credentials, failure))
    }

    /// Pushes `wasm` to `reference` in the Wasm artifact layout, then its signature, if any,
    /// as a referrer of the manifest.
    pub fn push(
        &self,
        reference: &Reference,
        wasm: &[u8],
        request: &PushRequest,
    ) -> Result<Pushed, RegistryError> {
        if self.options.offline {
            return Err(RegistryError::Offline {
                reference: reference.to_string(),
                store: self.store.dir().display().to_string(),
            });
        }
        if reference.tag.is_none() {
            return Err(refused(reference, "a push needs a tag (oci://HOST/REPO:TAG)".to_owned()));
        }
        let (session, credentials) = self.connect(reference)?;
        let distribution = &session.distribution;
        let failed = |failure| registry_error(reference, &credentials, failure);
        let image = reference.at_tag(reference.tag.as_deref().unwrap_or("latest"));

        let layer = Descriptor::of(WASM_LAYER_MEDIA_TYPE, wasm);
        let config = layout::WasmConfig {
            created: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            author: None,
            architecture: "wasm".to_owned(),
            os: "wasip2".to_owned(),
            layer_digests: vec![layer.digest.clone()],
            component: Some(layout::ComponentInfo {
                exports: request.exports.clone(),
                imports: request.imports.clone(),
                target: request.target.clone(),
            }),
        };
        let config_bytes = serde_json::to_vec(&config).expect("the config serializes");
        let mut manifest = Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
            artifact_type: None,
            config: Descriptor::of(WASM_CONFIG_MEDIA_TYPE, &config_bytes),
            layers: vec![layer.clone()],
            subject: None,
            annotations: request.annotations.clone(),
        };
        manifest
            .annotations
            .entry("org.opencontainers.image.created".to_owned())
            .or_insert_with(|| config.created.clone().unwrap_or_default());
        let manifest_bytes = serde_json::to_vec(&manifest).expect("the manifest serializes");
        let manifest_digest = layout::sha256(&manifest_bytes);
        let signature_digest = session.runtime.block_on(async {
            distribution.put_blob(&image, &credentials, wasm, &layer.digest).await.map_err(failed)?;
            distribution
                .put_blob(&image, &credentials, &config_bytes, &manifest.config.digest)
                .await
                .map_err(failed)?;
            distribution
                .put_manifest(&image, &credentials, &manifest_bytes, MANIFEST_MEDIA_TYPE)
                .await
                .map_err(failed)?;
            let Some(signature) = &request.signature else { return Ok(None) };
            let subject = Descriptor::of(MANIFEST_MEDIA_TYPE, &manifest_bytes);
            let signature_layer = Descriptor::of(SIGNATURE_ARTIFACT_TYPE, signature);
            let signature_manifest = layout::signature_manifest(&subject, &signature_layer);
            let bytes = serde_json::to_vec(&signature_manifest).expect("the manifest serializes");
            let digest = layout::sha256(&bytes);
            distribution
                .put_blob(&image, &credentials, signature, &signature_layer.digest)
                .await
                .map_err(failed)?;
            distribution
                .put_blob(&image, &credentials, layout::EMPTY_CONFIG, &signature_manifest.config.digest)
                .await
                .map_err(failed)?;
            let at = reference.at_digest(&digest);
            distribution
                .put_manifest(&at, &credentials, &bytes, MANIFEST_MEDIA_TYPE)
                .await
                .map_err(failed)?;
            // Registries without the referrers API (distribution 2.x among them) list
            // referrers under the tag schema; one that has the API ignores the tag.
            let tag = reference.at_tag(&layout::referrers_tag(&manifest_digest));
            let mut index = match distribution.manifest(&tag, &credentials, INDEX_MEDIA_TYPE).await {
                Ok(bytes) => serde_json::from_slice::<Index>(&bytes).unwrap_or_default(),
                Err(_) => Index::default(),
            };
            index.schema_version = 2;
            index.media_type = Some(INDEX_MEDIA_TYPE.to_owned());
            index.manifests.retain(|m| m.digest != digest);
            let mut entry = Descriptor::of(MANIFEST_MEDIA_TYPE, &bytes);
            entry.artifact_type = Some(SIGNATURE_ARTIFACT_TYPE.to_owned());
            index.manifests.push(entry);
            let index_bytes = serde_json::to_vec(&index).expect("the index serializes");
            distribution
                .put_manifest(&tag, &credentials, &index_bytes, INDEX_MEDIA_TYPE)
                .await
                .map_err(failed)?;
            Ok::<_, RegistryError>(Some(digest))
        })?;
        Ok(Pushed { manifest: manifest_digest, signature: signature_digest })
    }
}

fn refused(reference: &Reference, reason: String) -> RegistryError {
    RegistryError::Refused { reference: reference.to_string(), reason }
}

/// A request's failure in terms of `reference`.
fn registry_error(reference: &Reference, credentials: &Credentials, failure: Failure) -> RegistryError {
    match failure {
        Failure::Denied(reason) => RegistryError::Unauthorized {
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            credentials: credentials.describe(),
            reason,
        },
        Failure::NotFound(reason) => refused(reference, format!("not in the registry ({reason})")),
        Failure::Refused(reason) => refused(reference, reason),
        Failure::Transport(reason) => {
            RegistryError::Transport { registry: reference.registry.clone(), reason }
        }
    }
}

/// The newest signature among the referrers of `pinned` that matches its digest; none when
/// they cannot be listed or none can be read (the trust policy decides what that means),
/// with what was wrong with those skipped.
async fn fetch_signature(
    distribution: &Distribution,
    credentials: &Credentials,
    pinned: &Reference,
) -> (Option<Vec<u8>>, Vec<String>) {
    let mut problems = Vec::new();
    let index = match distribution.referrers(pinned, credentials, SIGNATURE_ARTIFACT_TYPE).await {
        Ok(index) => index,
        Err(failure) => {
            problems.push(format!("the signatures could not be listed: {}", failure.reason()));
            return (None, problems);
        }
    };
    let candidates = index
        .manifests
        .iter()
        .rev()
        .filter(|m| m.artifact_type.as_deref().is_none_or(|t| t == SIGNATURE_ARTIFACT_TYPE));
    for entry in candidates {
        if !layout::is_sha256(&entry.digest) {
            continue;
        }
        let at = pinned.at_digest(&entry.digest);
        let bytes = match distribution.manifest(&at, credentials, MANIFEST_MEDIA_TYPE).await {
            Ok(bytes) => bytes,
            Err(failure) => {
                problems.push(format!("the signature {}: {}", entry.digest, failure.reason()));
                continue;
            }
        };
        if layout::sha256(&bytes) != entry.digest {
            problems.push(format!("the signature {}: its manifest does not match its digest", entry.digest));
            continue;
        }
        let layer = match layout::signature_layer(&bytes) {
            Ok(layer) => layer,
            Err(reason) => {
                problems.push(format!("the referrer {}: {reason}", entry.digest));
                continue;
            }
        };
        match distribution.blob(pinned, credentials, &layer.digest, layer.size.min(MAX_SIGNATURE_BYTES)).await
        {
            Ok(signature) if layout::sha256(&signature) == layer.digest => {
                return (Some(signature), problems);
            }
            Ok(_) => problems.push(format!("the signature {}: it does not match its digest", entry.digest)),
            Err(failure) => problems.push(format!("the signature {}: {}", entry.digest, failure.reason())),
        }
    }
    (None, problems)
}
