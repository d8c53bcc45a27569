//! What can be read from a rule artifact without compiling it: the contract version it
//! was built against, its imports and exports, its digest.

use sha2::{Digest as _, Sha256};
use wasmparser::{Parser, Payload};

/// The custom section in which the SDK records the contract version.
pub const CONTRACT_SECTION: &str = "detect:contract-version";
pub use super::bindings::CONTRACT_VERSIONS;
/// The contract's WIT package, for messages.
pub const CONTRACT_PACKAGE: &str = "detect:rule";

/// The sha256 of an artifact's bytes, written `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The facts read from an artifact's sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInfo {
    /// The contract version recorded by the SDK, if any.
    pub contract_version: Option<String>,
    /// The component's imports that are not plain types, by name: what it needs the host
    /// to provide.
    pub imports: Vec<String>,
    /// The names of the types the component imports (from the contract); they carry no
    /// capability.
    pub type_imports: Vec<String>,
    /// The component's exports, by name.
    pub exports: Vec<String>,
    /// The artifact's digest.
    pub digest: Digest,
    /// The artifact's size in bytes.
    pub size: usize,
}

/// Why an artifact's sections could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactProblem {
    /// Not WebAssembly at all, or malformed.
    Malformed(String),
    /// A core module, not a component.
    NotAComponent,
}

/// Reads an artifact's sections. The contract-version section may sit at the top level or
/// in a nested core module (where `#[link_section]` in the guest puts it).
pub fn inspect(bytes: &[u8]) -> Result<ArtifactInfo, ArtifactProblem> {
    let mut info = ArtifactInfo {
        contract_version: None,
        imports: Vec::new(),
        type_imports: Vec::new(),
        exports: Vec::new(),
        digest: Digest::of(bytes),
        size: bytes.len(),
    };
    // Depth 1 is the outer component; nested modules and components are deeper.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| ArtifactProblem::Malformed(e.to_string()))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != wasmparser::Encoding::Component {
                    return Err(ArtifactProblem::NotAComponent);
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::CustomSection(section) if section.name() == CONTRACT_SECTION => {
                info.contract_version = Some(String::from_utf8_lossy(section.data()).trim().to_owned());
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| ArtifactProblem::Malformed(e.to_string()))?;
                    let name = import.name.name.to_owned();
                    match import.ty {
                        wasmparser::ComponentTypeRef::Type(_) => info.type_imports.push(name),
                        _ => info.imports.push(name),
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| ArtifactProblem::Malformed(e.to_string()))?;
                    info.exports.push(export.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// The implemented contract version (one of [`CONTRACT_VERSIONS`]) that a rule built
/// against contract `found` runs under: the one with the same major version, and for 0.x
/// the same minor version (semantic versioning's caret rule); `None` when there is none.
pub fn implemented_contract(found: &str) -> Option<&'static str> {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut parts = v.split('.');
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    let (found_major, found_minor) = parse(found)?;
    CONTRACT_VERSIONS.into_iter().find(|implemented| match parse(implemented) {
        Some((0, minor)) => found_major == 0 && found_minor == minor,
        Some((major, _)) => found_major == major,
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_follows_the_caret_rule() {
        assert_eq!(implemented_contract("0.2.0"), Some("0.2.0"));
        assert_eq!(implemented_contract("0.2.3"), Some("0.2.0"));
        assert_eq!(implemented_contract("0.1.0"), Some("0.1.0"));
        assert_eq!(implemented_contract("0.1.7"), Some("0.1.0"));
        assert_eq!(implemented_contract("0.3.0"), Some("0.3.0"));
        assert_eq!(implemented_contract("0.4.0"), Some("0.4.0"));
        assert_eq!(implemented_contract("0.4.2"), Some("0.4.0"));
        assert_eq!(implemented_contract("0.5.0"), None);
        assert_eq!(implemented_contract("1.1.0"), None);
        assert_eq!(implemented_contract("1.2"), None);
        assert_eq!(implemented_contract("banana"), None);
    }

    #[test]
    fn a_core_module_is_not_a_component() {
        let module = b"\0asm\x01\0\0\0";
        assert_eq!(inspect(module), Err(ArtifactProblem::NotAComponent));
        assert!(matches!(inspect(b"not wasm"), Err(ArtifactProblem::Malformed(_))));
    }
}
