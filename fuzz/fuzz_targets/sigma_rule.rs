//! Sigma YAML: a rule compiles or is refused with the file named, never a panic, however
//! deep or strange its YAML, condition or values.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let path = std::path::Path::new("fuzz.yml");
    if let Err(error) = rulehost::sigma::compile_text(path, text) {
        assert!(error.to_string().contains("fuzz.yml"), "{error}");
    }
});
