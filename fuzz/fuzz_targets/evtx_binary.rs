//! Bytes read as evtx (the format given, and told from the content): no panic, and every
//! record read is evaluated, skipped or rejected, the same whatever the number of threads;
//! a record read from its binary XML is the record that rendering it gives, where that
//! rendering does not fail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rulehost::events::InputFormat;

fuzz_target!(|bytes: &[u8]| {
    rulehost_fuzz::check_input("fuzz.evtx", bytes, InputFormat::Evtx);
    rulehost_fuzz::check_input("fuzz", bytes, InputFormat::Auto);
    if let (Some(told), Some(rendered)) =
        (rulehost_fuzz::evtx_records(bytes, false), rulehost_fuzz::evtx_records(bytes, true))
    {
        assert_eq!(told.len(), rendered.len(), "as many records either way");
        for (told, rendered) in told.iter().zip(&rendered) {
            // What a record read from its binary XML leaves unchecked: whether the rest of
            // it would parse and render.
            let render_failed = rendered.starts_with("Rejected") && rendered.contains("MalformedEvtx");
            assert!(told == rendered || render_failed, "told: {told}\nrendered: {rendered}");
        }
    }
});
