//! Artifact bytes: inspection and signature parsing never panic, and nothing but the
//! signed artifact itself verifies under the key that signed it (the corpus is seeded with
//! that artifact, so every mutation of it is tried).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rulehost::rules::TrustPolicy;
use rulehost::rules::signing;
use rulehost::runtime::artifact;

/// The key that `fuzz/seed.py` made for the run (`target/fuzz/keys`), and the artifact
/// signed with it.
struct Signed {
    policy: TrustPolicy,
    artifact: Vec<u8>,
}

fn signed() -> &'static Signed {
    static SIGNED: OnceLock<Signed> = OnceLock::new();
    SIGNED.get_or_init(|| {
        let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz/keys");
        let policy = TrustPolicy::load(&[keys.join("fuzz.pub")]).expect("the fuzz public key");
        let artifact = std::fs::read(keys.join("signed.wasm")).expect("the signed artifact");
        assert!(policy.verify(&artifact, None).is_ok(), "the seed verifies");
        Signed { policy, artifact }
    })
}

fuzz_target!(|bytes: &[u8]| {
    let _ = artifact::inspect(bytes);
    let _ = signing::signature_key_ids(bytes, None);
    let signed = signed();
    if signed.policy.verify(bytes, None).is_ok() {
        assert_eq!(bytes, &signed.artifact[..], "a changed artifact verified");
    }
    // As a detached signature of the signed artifact's bytes.
    let _ = signing::signature_key_ids(&signed.artifact, Some(bytes));
    let _ = signed.policy.verify(&signed.artifact, Some(bytes));
});
