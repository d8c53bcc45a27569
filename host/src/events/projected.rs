//! A matched event as a window keeps it until the window is summarized: only the fields the
//! rules' summaries read (their `summary-reads`), with the event's time and reading order.
//!
//! A window holds every event its rule matched, and a rule set such as the Sigma catalog
//! matches most process creations: these copies are most of the memory of a long `eval`. A
//! [`ProcessEvent`] carries a place for every field (a few hundred bytes before its text);
//! this carries places for the fields it holds only.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Field, ProcessEvent};

/// Bytes of one value a window keeps, and a `summarize` call is handed, at most; a longer value
/// is cut and marked (see [`shortened`]). Windows holds a command line to 32,767 UTF-16 units,
/// which this holds in UTF-8 unless most are outside ASCII: only a forged or damaged record is
/// cut. Kept in full, a window held every byte of every match (1.2 GB of memory for a stream of
/// 600 forged command lines of 2 MB), and a window of a hundred of them went past what one call
/// may copy into the guest: its alert was lost.
pub const SUMMARY_VALUE_BYTES: usize = 64 << 10;

/// Bytes of values one `summarize` call is handed at most: past this, the long values are cut
/// shorter (to a quarter, and again, down to [`MIN_SUMMARY_VALUE_BYTES`]). Under what one call
/// may copy into the guest (wasmtime's 128 MiB) and what an alert may return (16 MiB) times
/// the few columns that hold long values.
pub const SUMMARY_TEXT_BYTES: usize = 32 << 20;

/// The shortest a value is cut to for [`SUMMARY_TEXT_BYTES`].
pub const MIN_SUMMARY_VALUE_BYTES: usize = 256;

/// The longest mark [`shortened`] writes: `…[`, a length of up to 20 digits, ` bytes,
/// sha256:`, 16 hexadecimal digits and `]`.
const MARK_BYTES: usize = 3 + 1 + 20 + 15 + 16 + 1;

/// `value`, or when it is longer than `cap` bytes, its start (cut at a character) and a mark
/// of what was cut: `…[2000012 bytes, sha256:0123456789abcdef]`, the value's length and the
/// start of its digest. So the cut value says it was cut and how long it was, and two values
/// that differ only past the cut stay apart (a rule's count of distinct values holds).
/// A value cut already (a window's copy, cut shorter for a call) keeps the mark of the whole.
pub fn shortened(value: &str, cap: usize) -> Cow<'_, str> {
    if value.len() <= cap {
        return Cow::Borrowed(value);
    }
    let mark = match mark_of(value) {
        Some(at) => Cow::Borrowed(&value[at..]),
        None => {
            use sha2::Digest;
            let hex = hex::encode(&sha2::Sha256::digest(value.as_bytes())[..8]);
            Cow::Owned(format!("…[{} bytes, sha256:{hex}]", value.len()))
        }
    };
    let kept = value.floor_char_boundary(cap.saturating_sub(MARK_BYTES));
    Cow::Owned(format!("{}{mark}", &value[..kept]))
}

/// Where the mark [`shortened`] wrote at the end of `value` starts, if it ends with one.
fn mark_of(value: &str) -> Option<usize> {
    let at = value.rfind("…[")?;
    let inner = value[at + "…[".len()..].strip_suffix(']')?;
    let (length, hex) = inner.split_once(" bytes, sha256:")?;
    // A length as `shortened` writes it (at most 20 digits, as `MARK_BYTES` counts): a value
    // that ends with a forged mark of a million digits must not keep it whole, past its cap.
    let whole = (1..=20).contains(&length.len()) && length.bytes().all(|b| b.is_ascii_digit());
    let digest = hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (whole && digest).then_some(at)
}

/// The values of an event's fields by name: what a rule call reads of an event, whether it is
/// whole or a window's projection.
pub trait FieldValues {
    /// The value of `field`; `""` where the event has none.
    fn value(&self, field: Field) -> &str;
}

impl FieldValues for ProcessEvent {
    fn value(&self, field: Field) -> &str {
        self.get(field)
    }
}

impl<T: FieldValues + ?Sized> FieldValues for Arc<T> {
    fn value(&self, field: Field) -> &str {
        (**self).value(field)
    }
}

impl<T: FieldValues + ?Sized> FieldValues for &T {
    fn value(&self, field: Field) -> &str {
        (**self).value(field)
    }
}

/// The fields every projection holds besides the rules' own: what the host writes in an
/// alert (its first and last `Timestamp`, its `ReportId`s).
const ALWAYS: [Field; 2] = [Field::Timestamp, Field::ReportId];

/// The bytes that the projections counted in it hold together (see
/// [`ProjectedEvent::counted_in`]). Each adds its size when counted and takes it back when
/// dropped, so the count is what is held, however many windows share a projection.
#[derive(Debug, Clone, Default)]
pub struct HeldBytes(Arc<AtomicUsize>);

impl HeldBytes {
    /// The bytes held now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A window's copy of a matched event (see the module's documentation).
#[derive(Debug)]
pub struct ProjectedEvent {
    /// The values held, one after another.
    text: Box<str>,
    /// Each field held and where its value ends in `text` (it starts where the one before
    /// ends); a field is listed once.
    ends: Box<[(Field, u32)]>,
    time_ms: i64,
    read_order: u64,
    /// Where its size is counted while it lives.
    counted: Option<HeldBytes>,
}

impl Drop for ProjectedEvent {
    fn drop(&mut self) {
        if let Some(held) = &self.counted {
            held.0.fetch_sub(self.size_in_memory(), Ordering::Relaxed);
        }
    }
}

impl ProjectedEvent {
    /// The copy of `event` that holds `fields`, its `Timestamp` and `ReportId`, each value
    /// [`shortened`] to [`SUMMARY_VALUE_BYTES`].
    pub fn of(event: &ProcessEvent, fields: &[Field]) -> ProjectedEvent {
        let mut held: Vec<Field> = Vec::with_capacity(fields.len() + ALWAYS.len());
        for &field in fields.iter().chain(&ALWAYS) {
            if !held.contains(&field) {
                held.push(field);
            }
        }
        let size = held.iter().map(|&f| event.get(f).len().min(SUMMARY_VALUE_BYTES)).sum();
        let mut text = String::with_capacity(size);
        let ends = held
            .into_iter()
            .map(|field| {
                text.push_str(&shortened(event.get(field), SUMMARY_VALUE_BYTES));
                (field, u32::try_from(text.len()).expect("an event's text is under 4 GiB"))
            })
            .collect();
        ProjectedEvent {
            text: text.into_boxed_str(),
            ends,
            time_ms: event.time_ms(),
            read_order: event.read_order(),
            counted: None,
        }
    }

    /// Itself, its size counted in `held` until it is dropped.
    pub fn counted_in(mut self, held: &HeldBytes) -> Self {
        held.0.fetch_add(self.size_in_memory(), Ordering::Relaxed);
        self.counted = Some(held.clone());
        self
    }

    /// The value of `field`; `""` for a field it does not hold.
    pub fn get(&self, field: Field) -> &str {
        let mut start = 0;
        for &(held, end) in self.ends.iter() {
            if held == field {
                return &self.text[start as usize..end as usize];
            }
            start = end;
        }
        ""
    }

    /// The event's time, in milliseconds since the Unix epoch.
    pub fn time_ms(&self) -> i64 {
        self.time_ms
    }

    /// The event's place in the order the evaluation read its events.
    pub fn read_order(&self) -> u64 {
        self.read_order
    }

    /// About how many bytes it holds, itself and its values.
    pub fn size_in_memory(&self) -> usize {
        std::mem::size_of::<Self>() + self.text.len() + std::mem::size_of_val(&*self.ends)
    }
}

impl FieldValues for ProjectedEvent {
    fn value(&self, field: Field) -> &str {
        self.get(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_ending_with_a_forged_mark_is_cut_within_its_cap() {
        let forged = format!("cmd /c whoami …[{} bytes, sha256:0123456789abcdef]", "9".repeat(100_000));
        let cut = shortened(&forged, 256);
        assert!(cut.len() <= 256, "{} bytes", cut.len());
        assert!(cut.starts_with("cmd /c whoami"), "{cut}");
        // A mark it wrote itself is kept as the mark of the whole.
        let once = shortened(&"x".repeat(10_000), 1_000).into_owned();
        let twice = shortened(&once, 300);
        assert!(twice.len() <= 300 && twice.contains("…[10000 bytes, sha256:"), "{twice}");
    }

    /// The real process creations of the shared EVTX files.
    fn real_events() -> Vec<ProcessEvent> {
        let events = crate::events::shared_evtx_process_creations("");
        assert!(events.len() > 100, "{} process creations", events.len());
        events
    }

    #[test]
    fn a_projection_gives_the_fields_it_holds_as_the_event_does_and_no_other() {
        let fields = [Field::FolderPath, Field::ProcessCommandLine, Field::AccountName, Field::ReportId];
        let (mut whole, mut kept) = (0, 0);
        for event in real_events() {
            let projected = ProjectedEvent::of(&event, &fields);
            for &field in Field::ALL.iter() {
                let held = fields.contains(&field) || ALWAYS.contains(&field);
                let expected = if held { event.get(field) } else { "" };
                assert_eq!(projected.get(field), expected, "{field} of {:?}", event.origin());
                assert_eq!(projected.value(field), expected);
            }
            assert_eq!((projected.time_ms(), projected.read_order()), (event.time_ms(), event.read_order()));
            whole += event.size_in_memory();
            kept += projected.size_in_memory();
        }
        assert!(kept * 2 < whole, "projections hold {kept} bytes of the events' {whole}");
    }

    #[test]
    fn a_long_value_is_cut_at_a_character_with_a_mark_of_its_length_and_digest() {
        assert_eq!(shortened("short", 5), "short");
        // Two values that differ only past the cut, with a two-byte character across it.
        let one = format!("{}é{}", "a".repeat(999), "b".repeat(5_000));
        let other = format!("{}é{}", "a".repeat(999), "c".repeat(5_000));
        let cap = 999 + MARK_BYTES + 1;
        let (cut_one, cut_other) = (shortened(&one, cap), shortened(&other, cap));
        for (cut, whole) in [(&cut_one, &one), (&cut_other, &other)] {
            assert!(cut.len() <= cap, "{} bytes", cut.len());
            let (kept, mark) = cut.split_at(mark_of(cut).expect("a mark"));
            assert_eq!(kept, "a".repeat(999), "cut before the character it would split");
            assert!(mark.starts_with(&format!("…[{} bytes, sha256:", whole.len())), "{mark}");
        }
        assert_ne!(cut_one, cut_other, "values that differ past the cut stay apart");
        assert_eq!(shortened(&one.clone(), cap), cut_one, "and equal ones equal");
        // Cut again, shorter: the mark still names the whole value.
        let again = shortened(&cut_one, 600);
        assert!(again.len() <= 600 && again.ends_with(&cut_one[mark_of(&cut_one).unwrap()..]), "{again}");
        assert_eq!(mark_of("no mark…[12 bytes, sha256:xyz]"), None);
    }

    #[test]
    fn projections_counted_are_held_until_the_last_share_of_each_is_dropped() {
        let held = HeldBytes::default();
        let events = real_events();
        let fields = [Field::ProcessCommandLine, Field::DeviceName];
        let mut shared: Vec<Arc<ProjectedEvent>> =
            events.iter().map(|e| Arc::new(ProjectedEvent::of(e, &fields).counted_in(&held))).collect();
        let sizes: usize = shared.iter().map(|p| p.size_in_memory()).sum();
        assert_eq!(held.get(), sizes);
        // A second window's share of every other one: held once.
        let second: Vec<Arc<ProjectedEvent>> = shared.iter().step_by(2).cloned().collect();
        assert_eq!(held.get(), sizes);
        let first_half = shared.len() / 2;
        let dropped: usize = shared.drain(..first_half).map(|p| p.size_in_memory()).sum();
        let still_shared: usize =
            second.iter().take(first_half.div_ceil(2)).map(|p| p.size_in_memory()).sum();
        assert_eq!(held.get(), sizes - dropped + still_shared);
        drop(second);
        drop(shared);
        assert_eq!(held.get(), 0);
        // Uncounted: nothing.
        drop(ProjectedEvent::of(&events[0], &fields));
        assert_eq!(held.get(), 0);
    }

    #[test]
    fn a_window_keeps_no_more_of_a_value_than_a_summary_is_handed() {
        let mut event = real_events().remove(0);
        let line = format!("cmd /c echo {}", "A".repeat(3 * SUMMARY_VALUE_BYTES));
        event.set(Field::ProcessCommandLine, &line);
        let projected = ProjectedEvent::of(&event, &[Field::ProcessCommandLine, Field::FileName]);
        assert_eq!(projected.get(Field::ProcessCommandLine), shortened(&line, SUMMARY_VALUE_BYTES));
        assert_eq!(projected.get(Field::FileName), event.get(Field::FileName));
        assert!(
            projected.size_in_memory() < SUMMARY_VALUE_BYTES + 1024,
            "{} bytes",
            projected.size_in_memory()
        );
    }
}
