//! What the fuzz targets share: reading bytes as an input and checking the counts.

use std::sync::{Arc, OnceLock};

use rulehost::eval::{self, EvalOptions, Summary};
use rulehost::events::{Input, InputFormat, Record};
use rulehost::runtime::{CompiledRule, Runtime};
use rulehost::sinks::JsonLines;

/// The bundled rule, loaded once per process.
fn rules() -> &'static [Arc<CompiledRule>] {
    static RULES: OnceLock<Vec<Arc<CompiledRule>>> = OnceLock::new();
    RULES.get_or_init(|| {
        let runtime = Runtime::new().expect("a runtime");
        vec![rulehost::rules::load_bundled(&runtime).expect("the bundled rule")]
    })
}

/// What one reading of `bytes` gave: records by outcome.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Events, skipped records and rejected records, in input order, by their kind.
    pub sequence: Vec<String>,
}

/// Reads `bytes` named `name` in `format` with `jobs` parsing threads. `None` when the
/// input as a whole is refused (an unknown format, a container that does not open).
pub fn read(name: &str, bytes: &[u8], format: InputFormat, jobs: usize) -> Option<Outcomes> {
    let input = Input::bytes(name, bytes.to_vec()).with_jobs(jobs);
    let reader = input.open(format).ok()?;
    let mut outcomes = Outcomes::default();
    for record in reader {
        outcomes.sequence.push(match record {
            Record::Event(event) => format!("event {}", event.time_ms()),
            Record::Skipped(skipped) => format!("skipped {}", skipped.kind),
            Record::Rejected(error) => {
                let text = error.to_string();
                assert!(text.starts_with(name), "a rejection names its input: {text}");
                format!("rejected {}", error.reason.kind())
            }
        });
    }
    Some(outcomes)
}

/// Evaluates `bytes` with the bundled rule and checks the summary's invariant: every
/// record read is evaluated, skipped or rejected, and as many as the reader gives.
pub fn evaluate(name: &str, bytes: &[u8], format: InputFormat) -> Option<Summary> {
    let read = read(name, bytes, format, 1)?;
    let options = EvalOptions { input_format: format, ..EvalOptions::default() };
    let mut sink = JsonLines::new(Vec::new());
    let input = Input::bytes(name, bytes.to_vec());
    let summary = eval::evaluate(rules(), &[input], &options, &mut sink, &mut |_| {}).ok()?;
    assert_eq!(summary.read, summary.evaluated + summary.skipped_total() + summary.rejected_total());
    assert_eq!(summary.read as usize, read.sequence.len(), "{summary:?}");
    let events = read.sequence.iter().filter(|s| s.starts_with("event")).count();
    assert_eq!(summary.evaluated as usize, events);
    Some(summary)
}

/// [`evaluate`], and the same records whatever the number of parsing threads.
pub fn check_input(name: &str, bytes: &[u8], format: InputFormat) {
    if evaluate(name, bytes, format).is_some() {
        let one = read(name, bytes, format, 1);
        let three = read(name, bytes, format, 3);
        assert_eq!(one, three, "1 and 3 parsing threads read the same records");
    }
}

/// Every record of `bytes` read as EVTX, written out whole: each told from its binary XML
/// where it can be, or each rendered (`parse_all`).
pub fn evtx_records(bytes: &[u8], parse_all: bool) -> Option<Vec<String>> {
    let input = Input::bytes("fuzz.evtx", bytes.to_vec()).with_parse_all(parse_all);
    let reader = input.open(InputFormat::Evtx).ok()?;
    Some(reader.map(|record| format!("{record:?}")).collect())
}
