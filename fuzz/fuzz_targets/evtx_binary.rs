//! Bytes read as evtx (the format given, and told from the content): no panic, and every
//! record read is evaluated, skipped or rejected, the same whatever the number of threads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rulehost::events::InputFormat;

fuzz_target!(|bytes: &[u8]| {
    rulehost_fuzz::check_input("fuzz.evtx", bytes, InputFormat::Evtx);
    rulehost_fuzz::check_input("fuzz", bytes, InputFormat::Auto);
});
