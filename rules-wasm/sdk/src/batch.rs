//! Views of the host's packed batches: each event is a set of `&str` borrowed from the
//! batch's column arenas, with no copy per event.

use crate::Field;
use crate::bindings::detect::rule::types as wit;

/// The number of fields in the contract's `field` enum.
const FIELD_COUNT: usize = Field::SourceLine as usize + 1;

/// One unpacked column: the values' text and the end offset of each value.
#[derive(Debug, Default)]
struct Column {
    text: String,
    ends: Vec<u32>,
}

/// A batch of events, as the host sent it: only the fields the rule reads.
#[derive(Debug)]
pub struct Batch {
    len: usize,
    columns: [Option<Column>; FIELD_COUNT],
}

impl Batch {
    /// Unpacks a batch from the host. The text arrives as a contract `string`, whose UTF-8
    /// the canonical ABI guarantees; a column that does not have one value per event, or
    /// an offset off a character boundary (when read), breaks the contract and traps the
    /// call.
    pub(crate) fn from_wit(batch: wit::EventBatch) -> Self {
        let len = batch.count as usize;
        let mut columns: [Option<Column>; FIELD_COUNT] = Default::default();
        for column in batch.columns {
            assert_eq!(column.ends.len(), len, "column {:?} has one value per event", column.field);
            columns[column.field as usize] = Some(Column { text: column.data, ends: column.ends });
        }
        Self { len, columns }
    }

    /// A batch from columns already packed natively: per field the concatenated values and
    /// the end offset of each, as the host sends them. For running a rule natively (tests,
    /// benchmarks against the component), checked as the host's are: panics when a column
    /// does not have `len` values, and when a value read has an offset off a character
    /// boundary.
    pub fn from_columns(len: usize, packed: Vec<(Field, String, Vec<u32>)>) -> Self {
        let mut columns: [Option<Column>; FIELD_COUNT] = Default::default();
        for (field, text, ends) in packed {
            assert_eq!(ends.len(), len, "column {field:?} has one value per event");
            columns[field as usize] = Some(Column { text, ends });
        }
        Self { len, columns }
    }

    /// A batch made of rows of `(field, value)` pairs, for tests. A field a row does not
    /// name is `""` in that row.
    pub fn from_rows(rows: &[&[(Field, &str)]]) -> Self {
        let mut columns: [Option<Column>; FIELD_COUNT] = Default::default();
        let named = rows.iter().flat_map(|row| row.iter().map(|(field, _)| *field));
        for field in named {
            columns[field as usize].get_or_insert_with(Column::default);
        }
        for (slot, column) in columns.iter_mut().enumerate() {
            let Some(column) = column else { continue };
            for row in rows {
                let value = row.iter().find(|(f, _)| *f as usize == slot).map_or("", |(_, v)| *v);
                column.text.push_str(value);
                column.ends.push(column.text.len() as u32);
            }
        }
        Self { len: rows.len(), columns }
    }

    /// The number of events.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The event at `index`.
    #[inline]
    pub fn event(&self, index: usize) -> Event<'_> {
        assert!(index < self.len, "event {index} of a batch of {}", self.len);
        Event { batch: self, index }
    }

    // Inlined everywhere: in a Wasm guest an out-of-line call costs more than the lookup.
    #[inline(always)]
    fn value(&self, field: Field, index: usize) -> &str {
        let Some(column) = &self.columns[field as usize] else {
            return "";
        };
        let start = if index == 0 { 0 } else { column.ends[index - 1] as usize };
        let end = column.ends[index] as usize;
        column.text.get(start..end).expect("column offsets fall on value boundaries")
    }
}

/// One event of a [`Batch`]. A field the batch does not carry reads as `""`.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    batch: &'a Batch,
    index: usize,
}

macro_rules! accessors {
    ($($method:ident => $field:ident),* $(,)?) => {
        impl<'a> Event<'a> {
            $(
                #[doc = concat!("The `", stringify!($field), "` field.")]
                #[inline(always)]
                pub fn $method(&self) -> &'a str {
                    self.get(Field::$field)
                }
            )*
        }
    };
}

impl<'a> Event<'a> {
    /// The value of `field`, `""` when missing.
    #[inline(always)]
    pub fn get(&self, field: Field) -> &'a str {
        self.batch.value(field, self.index)
    }

    /// The event's position in its batch.
    pub fn index(&self) -> usize {
        self.index
    }
}

accessors! {
    timestamp => Timestamp,
    device_id => DeviceId,
    device_name => DeviceName,
    action_type => ActionType,
    file_name => FileName,
    folder_path => FolderPath,
    process_id => ProcessId,
    process_command_line => ProcessCommandLine,
    process_creation_time => ProcessCreationTime,
    process_integrity_level => ProcessIntegrityLevel,
    process_token_elevation => ProcessTokenElevation,
    account_domain => AccountDomain,
    account_name => AccountName,
    account_sid => AccountSid,
    sha1 => Sha1,
    sha256 => Sha256,
    md5 => Md5,
    initiating_process_file_name => InitiatingProcessFileName,
    initiating_process_folder_path => InitiatingProcessFolderPath,
    initiating_process_command_line => InitiatingProcessCommandLine,
    initiating_process_id => InitiatingProcessId,
    initiating_process_creation_time => InitiatingProcessCreationTime,
    initiating_process_account_domain => InitiatingProcessAccountDomain,
    initiating_process_account_name => InitiatingProcessAccountName,
    initiating_process_account_sid => InitiatingProcessAccountSid,
    initiating_process_parent_file_name => InitiatingProcessParentFileName,
    initiating_process_parent_id => InitiatingProcessParentId,
    report_id => ReportId,
    source_format => SourceFormat,
    source_file => SourceFile,
    source_line => SourceLine,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_columns_unpack_to_values() {
        let batch = Batch::from_wit(wit::EventBatch {
            count: 3,
            columns: vec![wit::Column {
                field: Field::FileName,
                data: "cmd.exepowershell.exe".into(),
                ends: vec![7, 7, 21],
            }],
        });
        assert_eq!(batch.event(0).file_name(), "cmd.exe");
        assert_eq!(batch.event(1).file_name(), "");
        assert_eq!(batch.event(2).file_name(), "powershell.exe");
        assert_eq!(batch.event(2).process_command_line(), "", "a field not sent is empty");
    }

    #[test]
    #[should_panic(expected = "column offsets fall on value boundaries")]
    fn an_offset_inside_a_character_breaks_the_contract() {
        let batch = Batch::from_columns(2, vec![(Field::FileName, "é".into(), vec![1, 2])]);
        batch.event(0).file_name();
    }

    #[test]
    fn rows_pack_like_the_host() {
        let batch = Batch::from_rows(&[&[(Field::DeviceName, "a")], &[(Field::FileName, "b")]]);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.event(0).device_name(), "a");
        assert_eq!(batch.event(0).file_name(), "");
        assert_eq!(batch.event(1).file_name(), "b");
    }
}
