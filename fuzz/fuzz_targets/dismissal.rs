//! The dismissal scan never dismisses a line that the full parse would evaluate, and
//! counts a line it dismisses under the kind the full parse gives; the typed read of an
//! evtx_dump line gives the record the general reader gives, where it takes the line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rulehost::events::Record;
use rulehost::events::input::{dismissal_and_full_parse, typed_and_general_read};

fuzz_target!(|line: &[u8]| {
    if line.contains(&b'\n') {
        return;
    }
    let (typed, general) = typed_and_general_read(line);
    if let Some(typed) = typed {
        let general: Vec<String> = general.iter().map(|r| format!("{r:?}")).collect();
        assert_eq!(general, [format!("{typed:?}")], "the typed read differs from the general reader");
    }
    let (dismissed, parsed) = dismissal_and_full_parse(line);
    let Some(kind) = dismissed else { return };
    for record in &parsed {
        match record {
            Record::Event(_) => panic!("dismissed as {kind}, but the full parse evaluates it"),
            Record::Skipped(skipped) => assert_eq!(skipped.kind, kind, "the kinds differ"),
            // What the scan leaves unchecked: the syntax beyond EventID and Channel.
            Record::Rejected(_) => {}
        }
    }
});
