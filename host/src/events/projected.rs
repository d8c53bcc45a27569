//! A matched event as a window keeps it until the window is summarized: only the fields the
//! rules' summaries read (their `summary-reads`), with the event's time and reading order.
//!
//! A window holds every event its rule matched, and a rule set such as the Sigma catalog
//! matches most process creations: these copies are most of the memory of a long `eval`. A
//! [`ProcessEvent`] carries a place for every field (a few hundred bytes before its text);
//! this carries places for the fields it holds only.

use std::sync::Arc;

use super::{Field, ProcessEvent};

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

/// A window's copy of a matched event (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedEvent {
    /// The values held, one after another.
    text: Box<str>,
    /// Each field held and where its value ends in `text` (it starts where the one before
    /// ends); a field is listed once.
    ends: Box<[(Field, u32)]>,
    time_ms: i64,
    read_order: u64,
}

impl ProjectedEvent {
    /// The copy of `event` that holds `fields`, its `Timestamp` and `ReportId`.
    pub fn of(event: &ProcessEvent, fields: &[Field]) -> ProjectedEvent {
        let mut held: Vec<Field> = Vec::with_capacity(fields.len() + ALWAYS.len());
        for &field in fields.iter().chain(&ALWAYS) {
            if !held.contains(&field) {
                held.push(field);
            }
        }
        let mut text = String::with_capacity(held.iter().map(|&f| event.get(f).len()).sum());
        let ends = held
            .into_iter()
            .map(|field| {
                text.push_str(event.get(field));
                (field, u32::try_from(text.len()).expect("an event's text is under 4 GiB"))
            })
            .collect();
        ProjectedEvent {
            text: text.into_boxed_str(),
            ends,
            time_ms: event.time_ms(),
            read_order: event.read_order(),
        }
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
}
