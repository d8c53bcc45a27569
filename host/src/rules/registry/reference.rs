//! `oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST]`: where a rule lives in a registry.

use std::fmt;

use super::layout::is_sha256;

/// The scheme that marks a rule path as a registry reference.
pub const SCHEME: &str = "oci://";

/// A parsed registry reference: by tag, or pinned by digest (a tag beside a digest is kept
/// for messages; the digest decides).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]`.
    pub registry: String,
    /// `name/space/repo`.
    pub repository: String,
    /// The tag (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// `sha256:<hex>`, when pinned.
    pub digest: Option<String>,
}

/// Whether a rule path names a registry reference rather than a file.
pub fn is_reference(path: &str) -> bool {
    path.starts_with(SCHEME)
}

impl Reference {
    /// Parses `oci://...`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text.strip_prefix(SCHEME).ok_or_else(|| format!("does not start with {SCHEME}"))?;
        let (registry, path) =
            rest.split_once('/').ok_or("no repository after the registry (oci://HOST/REPO:TAG)")?;
        if registry.is_empty()
            || !registry.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(format!("{registry:?} is not a registry host[:port]"));
        }
        let (path, digest) = match path.split_once('@') {
            Some((path, digest)) => {
                if !is_sha256(digest) {
                    return Err(format!("{digest:?} is not a sha256:<64 hex> digest"));
                }
                (path, Some(digest.to_owned()))
            }
            None => (path, None),
        };
        // A tag follows the last ':' of the last path component.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag.to_owned())),
            _ => (path, None),
        };
        if repository.is_empty() || !repository.split('/').all(is_path_component) {
            return Err(format!(
                "{repository:?} is not a repository name (lowercase letters, digits and . _ - between them, \
                 separated by /)"
            ));
        }
        if let Some(tag) = &tag
            && !is_tag(tag)
        {
            return Err(format!("{tag:?} is not a tag (letters, digits, _ . -; at most 128)"));
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_owned()) } else { tag };
        Ok(Reference { registry: registry.to_owned(), repository: repository.to_owned(), tag, digest })
    }

    /// The same repository at `digest`.
    pub fn at_digest(&self, digest: &str) -> Self {
        Reference { digest: Some(digest.to_owned()), ..self.clone() }
    }

    /// The same repository at `tag`, unpinned.
    pub fn at_tag(&self, tag: &str) -> Self {
        Reference { tag: Some(tag.to_owned()), digest: None, ..self.clone() }
    }

    /// The last component of the repository: the name its artifact takes on disk.
    pub fn name(&self) -> &str {
        self.repository.rsplit('/').next().unwrap_or(&self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `[a-z0-9]+([._-][a-z0-9]+)*`, as the distribution specification names repositories.
fn is_path_component(component: &str) -> bool {
    !component.is_empty()
        && component
            .split(['.', '_', '-'])
            .all(|run| !run.is_empty() && run.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_by_tag_and_by_digest_and_what_is_refused() {
        let r = Reference::parse("oci://127.0.0.1:5000/detect/soft-cell:1.0.0").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("127.0.0.1:5000", "detect/soft-cell"));
        assert_eq!((r.tag.as_deref(), r.digest.as_deref(), r.name()), (Some("1.0.0"), None, "soft-cell"));
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/detect/soft-cell:1.0.0");
        let latest = Reference::parse("oci://ghcr.io/acme/rules").unwrap();
        assert_eq!(latest.tag.as_deref(), Some("latest"));
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned = Reference::parse(&format!("oci://h:1/r@{digest}")).unwrap();
        assert_eq!((pinned.tag, pinned.digest.as_deref()), (None, Some(digest.as_str())));
        for bad in [
            "oci://host",
            "oci://host/Upper",
            "oci://host/a/../b:1",
            "oci://host/r:bad/tag",
            "oci://host/r@sha256:1234",
            "oci://ho st/r",
            "oci://host/r:.hidden",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
