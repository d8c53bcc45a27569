//! The shape of a rule in a registry: the CNCF TAG-Runtime Wasm artifact layout (an OCI image
//! manifest whose config is `application/vnd.wasm.config.v0+json` and whose one layer is
//! `application/wasm`), and its detached signature as an OCI referrer of that manifest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index (what the referrers API and its tag fallback list).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The config of a Wasm artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer of a Wasm artifact: the component's bytes.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The artifact type of a component, as wkg writes it.
pub const WASM_COMPONENT_ARTIFACT_TYPE: &str = "application/vnd.wasm.component.v1+wasm";
/// A rule's detached signature (wasmsign2's format), pushed as a referrer of its manifest.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.rulehost.signature.v1+wasmsign2";
/// The empty config of an artifact that needs none (the signature's).
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The bytes of the empty config.
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// The largest manifest or index read (the distribution specification's recommended bound).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The largest detached signature read: several signers' signatures take a few hundred bytes.
pub const MAX_SIGNATURE_BYTES: u64 = 64 << 10;

/// Where a blob is and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its length in bytes.
    pub size: u64,
    /// In an index: the artifact type of the manifest it lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Free-form facts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The descriptor of `bytes` as a blob of `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: sha256(bytes),
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// An OCI image manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MANIFEST_MEDIA_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// What the artifact is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The content.
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (a signature's subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Free-form facts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image index: here, the list of a manifest's referrers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`INDEX_MEDIA_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests listed.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// The config of a Wasm artifact, as the CNCF layout defines it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// When it was made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Always `wasm`.
    pub architecture: String,
    /// `wasip2` for a component.
    pub os: String,
    /// The layers' digests, in the manifest's order.
    #[serde(default)]
    pub layer_digests: Vec<String>,
    /// The component's world as seen from outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentInfo>,
}

/// What a component exports and imports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentInfo {
    /// Exported names.
    pub exports: Vec<String>,
    /// Imported names.
    pub imports: Vec<String>,
    /// The world it targets, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Whether `digest` is a well-formed `sha256:<64 lowercase hex>` (the only algorithm read).
pub fn is_sha256(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Reads `bytes` as a rule artifact's manifest and returns its one Wasm layer; anything
/// else (an index, a container image, two layers, a foreign media type) is refused with
/// what it is.
pub fn wasm_layer(bytes: &[u8]) -> Result<(Manifest, Descriptor), String> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| format!("the manifest is not an OCI image manifest: {e}"))?;
    if manifest.schema_version != 2 {
        return Err(format!("manifest schema version {} (only 2 is read)", manifest.schema_version));
    }
    if let Some(media_type) = &manifest.media_type
        && media_type != MANIFEST_MEDIA_TYPE
    {
        return Err(format!("the manifest's media type is {media_type}, not {MANIFEST_MEDIA_TYPE}"));
    }
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(format!(
            "the config's media type is {}: not a Wasm artifact (its config is {WASM_CONFIG_MEDIA_TYPE})",
            manifest.config.media_type
        ));
    }
    let layer = match manifest.layers.as_slice() {
        [layer] => layer.clone(),
        layers => {
            return Err(format!("the manifest has {} layers; a rule artifact has exactly one", layers.len()));
        }
    };
    if layer.media_type != WASM_LAYER_MEDIA_TYPE {
        return Err(format!("the layer's media type is {}, not {WASM_LAYER_MEDIA_TYPE}", layer.media_type));
    }
    if !is_sha256(&layer.digest) {
        return Err(format!("the layer's digest {:?} is not a sha256 digest", layer.digest));
    }
    Ok((manifest, layer))
}

/// Reads `bytes` as a signature's manifest and returns its one layer.
pub fn signature_layer(bytes: &[u8]) -> Result<Descriptor, String> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| format!("the signature's manifest is not an OCI image manifest: {e}"))?;
    match manifest.layers.as_slice() {
        [layer] if layer.media_type == SIGNATURE_ARTIFACT_TYPE && is_sha256(&layer.digest) => {
            if layer.size > MAX_SIGNATURE_BYTES {
                return Err(format!("the signature is {} bytes (at most {MAX_SIGNATURE_BYTES})", layer.size));
            }
            Ok(layer.clone())
        }
        _ => Err(format!("the signature's manifest does not hold one {SIGNATURE_ARTIFACT_TYPE} layer")),
    }
}

/// The manifest of a signature of `subject`, whose signature blob is `signature`.
pub fn signature_manifest(subject: &Descriptor, signature: &Descriptor) -> Manifest {
    Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
        artifact_type: Some(SIGNATURE_ARTIFACT_TYPE.to_owned()),
        config: Descriptor::of(EMPTY_MEDIA_TYPE, EMPTY_CONFIG),
        layers: vec![signature.clone()],
        subject: Some(subject.clone()),
        annotations: BTreeMap::new(),
    }
}

/// The tag under which a registry without the referrers API lists the referrers of
/// `digest` (the distribution specification's tag schema: `sha256-<hex>`).
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(config: &str, layers: &[&str]) -> Vec<u8> {
        let layers: Vec<Descriptor> = layers.iter().map(|m| Descriptor::of(m, b"\0asm")).collect();
        serde_json::to_vec(&Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.into()),
            artifact_type: None,
            config: Descriptor::of(config, b"{}"),
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        })
        .unwrap()
    }

    #[test]
    fn only_one_wasm_layer_under_a_wasm_config_is_a_rule_artifact() {
        let (_, layer) = wasm_layer(&manifest(WASM_CONFIG_MEDIA_TYPE, &[WASM_LAYER_MEDIA_TYPE])).unwrap();
        assert_eq!(layer.digest, sha256(b"\0asm"));
        let two = wasm_layer(&manifest(WASM_CONFIG_MEDIA_TYPE, &[WASM_LAYER_MEDIA_TYPE; 2])).unwrap_err();
        assert!(two.contains("2 layers"), "{two}");
        let image = wasm_layer(&manifest(
            "application/vnd.oci.image.config.v1+json",
            &["application/vnd.oci.image.layer.v1.tar+gzip"],
        ))
        .unwrap_err();
        assert!(image.contains("not a Wasm artifact"), "{image}");
        let foreign =
            wasm_layer(&manifest(WASM_CONFIG_MEDIA_TYPE, &["application/octet-stream"])).unwrap_err();
        assert!(foreign.contains("application/octet-stream"), "{foreign}");
        assert!(wasm_layer(b"{\"manifests\": []}").is_err());
        assert_eq!(referrers_tag(&sha256(b"")), format!("sha256-{}", &sha256(b"")[7..]));
        assert!(!is_sha256("sha256:../../etc/passwd"));
    }
}
