//! Trust-policy TOML: a policy parses, naming its file as its source, or is refused with a
//! message; never a panic, and a policy that parses judges the signed artifact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rulehost::rules::TrustPolicy;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    // Key paths are relative to the policy's directory, where the corpus keeps a key.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz/keys/policy.toml");
    match TrustPolicy::from_policy_text(&path, text) {
        Ok(policy) => {
            assert_eq!(policy.source(), path.display().to_string());
            let signed = path.with_file_name("signed.wasm");
            let _ = policy.verify(&std::fs::read(signed).expect("the signed artifact"), None);
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
