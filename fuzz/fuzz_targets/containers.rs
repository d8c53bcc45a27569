//! Bytes read as a gzip or zip container (and whatever is inside): no panic, and every
//! record read is evaluated, skipped or rejected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rulehost::events::InputFormat;

fuzz_target!(|bytes: &[u8]| {
    rulehost_fuzz::check_input("fuzz.zip", bytes, InputFormat::Auto);
    rulehost_fuzz::check_input("fuzz.jsonl.gz", bytes, InputFormat::Auto);
});
