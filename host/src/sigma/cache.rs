//! Sigma files compiled once: the pack they make is kept in the component cache under the
//! digest of the rule texts, their paths, the pack format and the evaluator, with the rules
//! the compiler refused, so that a host that starts again on the same files reads neither
//! YAML nor builds a pack (and the pack's compiled component is then cached too).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{SigmaError, Unsupported, pack};
use crate::runtime::ComponentCache;

/// What a cached compilation holds.
#[derive(Debug)]
pub struct Cached {
    /// The pack's bytes, as [`pack::build`] wrote them.
    pub pack: Vec<u8>,
    /// The rules left out, as the compiler refused them.
    pub refused: Vec<SigmaError>,
}

/// A refusal as it is stored: only the compiler's own refusals are (a file that could not
/// be read, or is malformed or too large, is compiled again).
#[derive(Serialize, Deserialize)]
struct Refusal {
    file: PathBuf,
    id: String,
    title: String,
    construct: String,
    reason: String,
}

/// The first bytes of a stored compilation, then the length of its refusals' encoding (eight
/// bytes, little-endian), the refusals (postcard), and the pack's bytes as they are. The pack
/// is not in the postcard encoding: decoding its 11 MB (the catalog's) a byte at a time was
/// 15% of a warm start from a folder of YAML. A file without these bytes (the layout before
/// them) is not read.
const ENTRY_MAGIC: &[u8] = b"rulehost sigma compilation 2\0";

/// The sources of the Sigma compiler and of the pack maker: a binary whose compiler changed
/// (a semantics fixed, packs made otherwise) finds none of the packs an older one cached.
/// The evaluator and the format of the compiled rules are keyed as well.
const COMPILER: [&str; 5] = [
    include_str!("mod.rs"),
    include_str!("condition.rs"),
    include_str!("value.rs"),
    include_str!("pack.rs"),
    include_str!("snapshot.rs"),
];

/// The cache entry's name for `files` (the Sigma files, directories expanded), or `None`
/// when one cannot be read (the compiler then says why).
pub fn key(files: &[PathBuf]) -> Option<String> {
    let mut hasher = Sha256::new();
    hasher.update(b"rulehost sigma pack\0");
    hasher.update(rulehost_sigma::ir::FORMAT.to_le_bytes());
    hasher.update(Sha256::digest(pack::EVALUATOR));
    for source in COMPILER {
        hasher.update(Sha256::digest(source));
    }
    let mut all = Vec::new();
    for path in files {
        if path.is_dir() {
            all.extend(super::files_under(path).ok()?);
        } else {
            all.push(path.clone());
        }
    }
    for file in all {
        let bytes = std::fs::read(&file).ok()?;
        let name = file.as_os_str().as_encoded_bytes();
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Some(format!("sigma-{}.pack", hex::encode(hasher.finalize())))
}

/// The cached compilation under `key`, if there is a sound one.
pub fn load(cache: &ComponentCache, key: &str) -> Option<Cached> {
    let mut bytes = cache.load_file(key)?;
    let rest = bytes.strip_prefix(ENTRY_MAGIC)?;
    let (length, rest) = rest.split_first_chunk::<8>()?;
    let length = usize::try_from(u64::from_le_bytes(*length)).ok()?;
    let refusals: Vec<Refusal> = postcard::from_bytes(rest.get(..length)?).ok()?;
    let pack = bytes.split_off(ENTRY_MAGIC.len() + 8 + length);
    let refused = refusals
        .into_iter()
        .map(|r| SigmaError::Unsupported {
            file: r.file,
            id: r.id,
            title: r.title,
            unsupported: Unsupported { construct: r.construct, reason: r.reason },
        })
        .collect();
    Some(Cached { pack, refused })
}

/// Stores a compilation, unless a refusal is not the compiler's own.
pub fn store(cache: &ComponentCache, key: &str, pack: &[u8], refused: &[SigmaError]) {
    let mut stored = Vec::with_capacity(refused.len());
    for error in refused {
        let SigmaError::Unsupported { file, id, title, unsupported } = error else { return };
        stored.push(Refusal {
            file: file.clone(),
            id: id.clone(),
            title: title.clone(),
            construct: unsupported.construct.clone(),
            reason: unsupported.reason.clone(),
        });
    }
    let refusals = postcard::to_allocvec(&stored).expect("refusals serialize");
    let mut entry = Vec::with_capacity(ENTRY_MAGIC.len() + 8 + refusals.len() + pack.len());
    entry.extend_from_slice(ENTRY_MAGIC);
    entry.extend_from_slice(&(refusals.len() as u64).to_le_bytes());
    entry.extend_from_slice(&refusals);
    entry.extend_from_slice(pack);
    cache.store_file(key, &entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compilation_comes_back_with_its_refusals_and_a_changed_text_is_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let rule = dir.path().join("rule.yml");
        std::fs::write(&rule, "title: a\n").unwrap();
        let files = vec![dir.path().to_path_buf()];
        let key = key(&files).unwrap();
        let cache = ComponentCache::new(dir.path().join("cache"));
        assert!(load(&cache, &key).is_none());
        let refusal = SigmaError::Unsupported {
            file: rule.clone(),
            id: "x".into(),
            title: "a".into(),
            unsupported: Unsupported { construct: "|cidr".into(), reason: "no".into() },
        };
        store(&cache, &key, b"pack bytes", std::slice::from_ref(&refusal));
        let cached = load(&cache, &key).unwrap();
        assert_eq!(cached.pack, b"pack bytes");
        assert_eq!(cached.refused.len(), 1);
        assert_eq!(cached.refused[0].to_string(), refusal.to_string());

        std::fs::write(&rule, "title: b\n").unwrap();
        assert_ne!(super::key(&files).unwrap(), key);
        // A corrupt entry is a miss.
        let path = dir.path().join("cache").join(&key);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(load(&cache, &key).is_none());
        // So is one cut short inside its refusals.
        bytes[0] ^= 1;
        std::fs::write(&path, &bytes[..ENTRY_MAGIC.len() + 10]).unwrap();
        assert!(load(&cache, &key).is_none());
        // And one written in the layout before this one (the pack inside the postcard).
        #[derive(Serialize)]
        struct Before {
            pack: Vec<u8>,
            refused: Vec<Refusal>,
        }
        let before = Before { pack: b"pack bytes".to_vec(), refused: Vec::new() };
        std::fs::write(&path, postcard::to_allocvec(&before).unwrap()).unwrap();
        assert!(load(&cache, &key).is_none());
    }
}
