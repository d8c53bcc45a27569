//! The evaluator of every Sigma pack (contract `detect:rule@0.4.0`, world `pack`).
//!
//! This crate is built once, with the host, into a core module that holds no rule. The host's
//! `rulehost sigma compile` writes a set of compiled rules ([`rulehost_sigma::Pack`], as JSON)
//! into a copy of that module as data and wraps it into a component: the component's code is
//! always this evaluator, its rules are its data, and no Rust toolchain is needed to make one.
//! The host tells the evaluator where the data lies by overwriting [`PACK_DATA`] (found by its
//! marker) with the data's offset and length in linear memory.
//!
//! An alert groups one rule's matches on one device in one window.

use std::borrow::Cow;
use std::sync::OnceLock;

use rulehost_sigma::ir::{Check, Column, Expr, Level, Target, View};
use rulehost_sigma::{Event as _, Matcher, Pack, Scratch};

// The generated glue is the canonical ABI's: raw pointers and exported symbols.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ world: "pack", path: "../../wit/v0.4.0" });
}

use bindings::detect::rule::types::{
    Alert, AlertColumn, Column as PackedColumn, EventBatch, EventSource, Field, RuleMatches, RuleMetadata,
    Severity, Value, Window,
};

/// The contract version, for the host to read before it compiles the component.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
#[unsafe(link_section = "detect:contract-version")]
#[used]
static CONTRACT_VERSION: [u8; 5] = *b"0.4.0";

/// Where the pack's data lies: the marker the host finds it by, then (written by the host) the
/// data's offset and length in linear memory, little-endian. All ones: no data (an empty pack).
#[used]
pub static PACK_DATA: [u8; 16] = *b"\xd1rhpack\x01\xff\xff\xff\xff\xff\xff\xff\xff";

/// The marker at the start of [`PACK_DATA`], which the host searches for.
pub const PACK_DATA_MARKER: &[u8; 8] = b"\xd1rhpack\x01";

/// At most this many distinct values are kept in each set column of an alert (as KQL's
/// `make_set(x, 100)`).
const MAX_SET_VALUES: usize = 100;

/// The columns an alert is made of.
const SUMMARY_COLUMNS: [Column; 7] = [
    Column::DeviceId,
    Column::DeviceName,
    Column::FolderPath,
    Column::ProcessCommandLine,
    Column::InitiatingProcessFolderPath,
    Column::AccountDomain,
    Column::AccountName,
];

/// The pack's rules, read from its data when first asked for (by `metadata`).
static PACK: OnceLock<Pack> = OnceLock::new();
/// The matcher over them. A pack made by the host has it built already (see `initialize`);
/// otherwise it is built when first needed (by `evaluate`), so that loading a pack, which
/// asks only for the metadata, does not pay for it.
static MATCHER: OnceLock<Matcher> = OnceLock::new();

/// The pack's data as the host wrote it.
#[allow(unsafe_code)]
fn data() -> &'static [u8] {
    // SAFETY: PACK_DATA is a plain static; the volatile read keeps the compiler from folding
    // the value it was compiled with, which the host overwrites in the module's data.
    let location: [u8; 16] = unsafe { std::ptr::read_volatile(&raw const PACK_DATA) };
    let offset = u32::from_le_bytes(location[8..12].try_into().expect("4 bytes"));
    let length = u32::from_le_bytes(location[12..16].try_into().expect("4 bytes"));
    if offset == u32::MAX || length == 0 {
        return &[];
    }
    // SAFETY: the host placed `length` bytes at `offset`, in pages it added to the module's
    // memory before anything ran, beyond everything the program's own data and allocator
    // use; they are written only by `initialize`, after the pack is decoded, when nothing
    // reads them again. The component model validates that the memory holds them.
    unsafe { std::slice::from_raw_parts(offset as usize as *const u8, length as usize) }
}

thread_local! {
    /// The matcher's working memory, kept from one batch to the next.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

fn pack() -> &'static Pack {
    PACK.get_or_init(|| {
        let data = data();
        if data.is_empty() {
            Pack { format: rulehost_sigma::ir::FORMAT, rules: Vec::new() }
        } else {
            // The host wrote this data from the same definitions; a failure is a broken pack,
            // and the trap that follows is reported as the rule's failure.
            Pack::decode(data).expect("the pack's data reads")
        }
    })
}

fn matcher() -> &'static Matcher {
    MATCHER.get_or_init(|| Matcher::new(pack()).expect("the pack's rules compile"))
}

/// Reads the pack and builds its matcher ahead of any call. The host calls it once when it
/// makes a pack and keeps the memory it leaves as the pack's initial memory (a Wizer
/// snapshot; the export is removed from the pack), so that every instance of the pack starts
/// with its matcher built instead of building it at its first batch.
///
/// The snapshot keeps every byte that is not zero. While this runs, memory is zeroed as it
/// is freed (the build's scratch is most of what it touches), and the rules' data is zeroed
/// once read, so the pack keeps only what the matcher holds.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
#[unsafe(export_name = "wizer-initialize")]
pub extern "C" fn initialize() {
    use std::sync::atomic::Ordering;
    INITIALIZING.store(true, Ordering::Relaxed);
    matcher();
    let data = data();
    // SAFETY: the data's pages were placed by the host past everything the program uses and
    // are read only through `data()`, which nothing calls again: the pack is decoded.
    unsafe { std::ptr::write_bytes(data.as_ptr().cast_mut(), 0, data.len()) };
    fill_free_blocks();
    INITIALIZING.store(false, Ordering::Relaxed);
}

/// Takes every block the allocator holds free in the memory there is now, and keeps it, so
/// that what an instance allocates later comes from memory past the snapshot.
///
/// The free blocks lie among the matcher's own, in the pages every instance maps
/// copy-on-write from the compiled pack. An instance that allocated in them (its regular
/// expressions compiled when first reached, the batches the host copies in, the matcher's
/// scratch) copied each page at its first write, and each copy flushed the page from the
/// TLB of every core running the process: the catalog over 5,000 EVTX files (real records,
/// 2 jobs) made 2,054-2,881 TLB shootdowns before this, 104-105 after. Memory past the
/// snapshot is the instance's own, zero until written.
///
/// Blocks are asked for from 64 KiB down to 8 bytes, each size until one comes from memory
/// grown for it. Those are kept too: freed, a grown block would be the allocator's next
/// choice before the smaller free blocks left, and grown memory left free would end in the
/// allocator's boundary tag, which the snapshot would keep with every zero page before it.
/// What this grows is at most twice the largest size; a larger free block is taken in
/// pieces. Every block taken is zero, and no instance touches one. What is left free of the
/// memory grown last (under the largest size) lies in the snapshot still, before the
/// allocator's record at the memory's end.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
fn fill_free_blocks() {
    let end = core::arch::wasm32::memory_size(0) * 65_536;
    let mut size = LARGEST_FILLING_BLOCK;
    while size >= 8 {
        // SAFETY: a valid layout (non-zero size, power-of-two alignment).
        let layout = unsafe { std::alloc::Layout::from_size_align_unchecked(size, 8) };
        loop {
            // SAFETY: `layout` is valid; no block taken is ever freed.
            let block = unsafe { std::alloc::alloc(layout) };
            if block.is_null() || block as usize + size > end {
                break;
            }
        }
        size /= 2;
    }
}

/// The largest block [`fill_free_blocks`] asks for.
#[cfg(target_arch = "wasm32")]
const LARGEST_FILLING_BLOCK: usize = 1 << 16;

/// Whether the pack is being initialized (see `initialize`).
#[cfg(target_arch = "wasm32")]
static INITIALIZING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The standard allocator, zeroing what is freed while the pack is initialized.
#[cfg(target_arch = "wasm32")]
struct ZeroFreed;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: ZeroFreed = ZeroFreed;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
// SAFETY: every call is passed on to the system allocator; the zeroing writes only within
// a block that is being freed, before it is.
unsafe impl std::alloc::GlobalAlloc for ZeroFreed {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: std::alloc::Layout) {
        if INITIALIZING.load(std::sync::atomic::Ordering::Relaxed) {
            unsafe { block.write_bytes(0, layout.size()) };
        }
        unsafe { std::alloc::System.dealloc(block, layout) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if !INITIALIZING.load(std::sync::atomic::Ordering::Relaxed) {
            return unsafe { std::alloc::System.realloc(block, layout, new_size) };
        }
        // Moved by hand, so that the old block is zeroed as it is freed.
        let new_layout = unsafe { std::alloc::Layout::from_size_align_unchecked(new_size, layout.align()) };
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        moved
    }
}

fn field(column: Column) -> Field {
    match column {
        Column::DeviceId => Field::DeviceId,
        Column::DeviceName => Field::DeviceName,
        Column::FileName => Field::FileName,
        Column::FolderPath => Field::FolderPath,
        Column::ProcessId => Field::ProcessId,
        Column::ProcessCommandLine => Field::ProcessCommandLine,
        Column::ProcessIntegrityLevel => Field::ProcessIntegrityLevel,
        Column::AccountDomain => Field::AccountDomain,
        Column::AccountName => Field::AccountName,
        Column::Sha1 => Field::Sha1,
        Column::Sha256 => Field::Sha256,
        Column::Md5 => Field::Md5,
        Column::Imphash => Field::Imphash,
        Column::InitiatingProcessFileName => Field::InitiatingProcessFileName,
        Column::InitiatingProcessFolderPath => Field::InitiatingProcessFolderPath,
        Column::InitiatingProcessCommandLine => Field::InitiatingProcessCommandLine,
        Column::InitiatingProcessId => Field::InitiatingProcessId,
        Column::InitiatingProcessAccountDomain => Field::InitiatingProcessAccountDomain,
        Column::InitiatingProcessAccountName => Field::InitiatingProcessAccountName,
        Column::InitiatingProcessParentFolderPath => Field::InitiatingProcessParentFolderPath,
        Column::ProcessVersionInfoOriginalFileName => Field::ProcessVersionInfoOriginalFileName,
        Column::ProcessVersionInfoFileDescription => Field::ProcessVersionInfoFileDescription,
        Column::ProcessVersionInfoProductName => Field::ProcessVersionInfoProductName,
        Column::ProcessVersionInfoCompanyName => Field::ProcessVersionInfoCompanyName,
        Column::ProcessVersionInfoProductVersion => Field::ProcessVersionInfoProductVersion,
        Column::ProcessCurrentDirectory => Field::ProcessCurrentDirectory,
        Column::LogonId => Field::LogonId,
    }
}

/// One event of a batch, read through the batch's columns.
struct BatchEvent<'b> {
    batch: &'b EventBatch,
    /// For each [`Column`], the index of its column in the batch.
    columns: &'b [Option<usize>],
    index: usize,
}

impl rulehost_sigma::Event for BatchEvent<'_> {
    fn column(&self, column: Column) -> &str {
        self.text(column)
    }
}

/// The number of [`Column`]s.
const COLUMNS: usize = Column::ALL.len();

/// One event's values, each column's read from the batch once before the matcher reads them:
/// the matcher reads 25 values of an event, and reading each through [`BatchEvent::text`]
/// (which column, where in it, and the checks of each step) cost 3.5% of a run of the
/// catalog over real records.
struct EventValues<'b> {
    values: [&'b str; COLUMNS],
}

impl rulehost_sigma::Event for EventValues<'_> {
    fn column(&self, column: Column) -> &str {
        self.values[column as usize]
    }
}

/// The value of the event at `index` in `packed`: `""` where the column does not say where it
/// lies, or says a place off its text's character boundaries (the host packs on them).
fn value_at(packed: &PackedColumn, index: usize) -> &str {
    let (start, end) = span_at(packed, index);
    packed.data.get(start..end).unwrap_or("")
}

/// Where the value of the event at `index` lies in `packed`'s text; a start or end missing
/// reads as absent (an empty place). Two events whose places are equal have equal values.
fn span_at(packed: &PackedColumn, index: usize) -> (usize, usize) {
    let end = packed.ends.get(index).copied().unwrap_or(0) as usize;
    let start = if packed.starts.is_empty() {
        match index {
            0 => 0,
            i => packed.ends.get(i - 1).copied().unwrap_or(0) as usize,
        }
    } else {
        let Some(&start) = packed.starts.get(index) else { return (0, 0) };
        start as usize
    };
    (start, end)
}

/// Where an event's values of up to two columns lie in the batch: equal places, equal values.
type Places = [(usize, usize); 2];

/// An alert's set column: the distinct values of `value` over `events`, in order, at most
/// [`MAX_SET_VALUES`]. A value is copied only when it joins the set: a window may hold many
/// thousands of matches of a few distinct values. An event whose values lie where those of
/// a value of the set lie (`places`; the host sends a window's repeated values once) is
/// passed over without its value being made or compared.
fn set_column<'b>(
    name: &str,
    events: &[u32],
    places: impl Fn(usize) -> Places,
    value: impl Fn(usize) -> Cow<'b, str>,
) -> AlertColumn {
    let mut values: Vec<String> = Vec::new();
    let mut known: Vec<Places> = Vec::new();
    for &i in events {
        if values.len() == MAX_SET_VALUES {
            break;
        }
        let at = places(i as usize);
        if known.contains(&at) {
            continue;
        }
        let v = value(i as usize);
        if v.is_empty() {
            continue;
        }
        // Only the places of the values in the set are kept, so that a batch whose values
        // all lie apart costs a comparison with each value of the set, as it did before
        // values were shared, not with every place seen.
        if !values.iter().any(|seen| rulehost_sigma::equal(seen.as_bytes(), v.as_bytes())) {
            values.push(v.into_owned());
            known.push(at);
        }
    }
    AlertColumn { name: name.into(), value: Value::Texts(values) }
}

/// [`set_column`] of one column's values.
fn one_column_set<'b>(
    name: &str,
    events: &[u32],
    event: &impl Fn(usize) -> BatchEvent<'b>,
    column: Column,
) -> AlertColumn {
    set_column(name, events, |i| [event(i).range(column), (0, 0)], |i| Cow::Borrowed(event(i).text(column)))
}

impl<'b> BatchEvent<'b> {
    /// The value of `column`, borrowed from the batch.
    fn text(&self, column: Column) -> &'b str {
        self.columns[column as usize].map_or("", |at| value_at(&self.batch.columns[at], self.index))
    }

    /// Where the value of `column` lies in its column's data (`0..0` for a column not sent).
    /// Two events whose ranges are equal have equal values.
    fn range(&self, column: Column) -> (usize, usize) {
        self.columns[column as usize].map_or((0, 0), |at| span_at(&self.batch.columns[at], self.index))
    }
}

fn column_index(batch: &EventBatch) -> Vec<Option<usize>> {
    Column::ALL.iter().map(|&column| batch.columns.iter().position(|c| c.field == field(column))).collect()
}

/// The columns a rule's condition reads.
fn rule_columns(expr: &Expr, out: &mut Vec<Column>) {
    match expr {
        Expr::And(exprs) | Expr::Or(exprs) => exprs.iter().for_each(|e| rule_columns(e, out)),
        Expr::Not(expr) => rule_columns(expr, out),
        Expr::Test(test) => {
            let views: &[View] = match &test.target {
                Target::View(view) => std::slice::from_ref(view),
                Target::Keyword => rulehost_sigma::ir::KEYWORD_VIEWS,
            };
            for view in views {
                out.extend_from_slice(view.columns());
            }
            if let Check::EqualsView(other) = &test.check {
                out.extend_from_slice(other.columns());
            }
        }
    }
}

struct SigmaPack;

impl bindings::Guest for SigmaPack {
    fn metadata() -> Vec<RuleMetadata> {
        pack()
            .rules
            .iter()
            .map(|rule| {
                let mut columns = Vec::new();
                rule_columns(&rule.condition, &mut columns);
                columns.sort_unstable();
                columns.dedup();
                RuleMetadata {
                    id: rule.id.clone(),
                    version: rule.version.clone(),
                    title: rule.title.clone(),
                    description: rule.description.clone(),
                    severity: match rule.level {
                        Level::Informational => Severity::Informational,
                        Level::Low => Severity::Low,
                        Level::Medium => Severity::Medium,
                        Level::High => Severity::High,
                        Level::Critical => Severity::Critical,
                    },
                    tactics: rule.tactics.clone(),
                    techniques: rule.techniques.clone(),
                    coverage: vec![
                        EventSource::SysmonProcessCreate,
                        EventSource::SecurityProcessCreate,
                        EventSource::DefenderDeviceProcessEvents,
                    ],
                    // A rule that reads nothing (a condition of constants) still reads the
                    // device, so that its batch is never empty of columns.
                    reads: if columns.is_empty() {
                        vec![Field::DeviceId]
                    } else {
                        columns.into_iter().map(field).collect()
                    },
                    summary_reads: SUMMARY_COLUMNS.iter().map(|&c| field(c)).collect(),
                    indicators: Vec::new(),
                    query_period_seconds: 3600,
                    query_frequency_seconds: 3600,
                }
            })
            .collect()
    }

    fn evaluate(batch: EventBatch) -> Vec<RuleMatches> {
        let matcher = matcher();
        let columns = column_index(&batch);
        let sent: Vec<(usize, &PackedColumn)> = Column::ALL
            .iter()
            .zip(&columns)
            .filter_map(|(&column, at)| Some((column as usize, &batch.columns[(*at)?])))
            .collect();
        let mut per_rule: Vec<Vec<u32>> = vec![Vec::new(); matcher.len()];
        SCRATCH.with_borrow_mut(|scratch| {
            let mut matched = Vec::new();
            let mut event = EventValues { values: [""; COLUMNS] };
            for index in 0..batch.count as usize {
                for &(column, packed) in &sent {
                    event.values[column] = value_at(packed, index);
                }
                matched.clear();
                matcher.evaluate(&event, scratch, &mut matched);
                for &rule in &matched {
                    per_rule[rule as usize].push(index as u32);
                }
            }
        });
        per_rule
            .into_iter()
            .enumerate()
            .filter(|(_, events)| !events.is_empty())
            .map(|(rule, events)| RuleMatches { rule: rule as u32, events })
            .collect()
    }

    fn summarize(_rule: u32, _window: Window, matched: EventBatch) -> Vec<Alert> {
        let columns = column_index(&matched);
        // Groups by device, in the order devices are first seen.
        let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
        let mut by_device: std::collections::BTreeMap<String, usize> = Default::default();
        // The last event's device places and group: a window's events are mostly of a few
        // devices, whose values the host sends once.
        let mut last: Option<(Places, usize)> = None;
        for index in 0..matched.count as usize {
            let event = BatchEvent { batch: &matched, columns: &columns, index };
            let places = [event.range(Column::DeviceId), event.range(Column::DeviceName)];
            if let Some((_, group)) = last.filter(|(seen, _)| *seen == places) {
                groups[group].1.push(index as u32);
                continue;
            }
            let device = match event.column(Column::DeviceId) {
                "" => event.column(Column::DeviceName),
                id => id,
            };
            let group = match by_device.get(device) {
                Some(&group) => group,
                None => {
                    by_device.insert(device.to_owned(), groups.len());
                    groups.push((device.to_owned(), Vec::new()));
                    groups.len() - 1
                }
            };
            groups[group].1.push(index as u32);
            last = Some((places, group));
        }
        groups
            .into_iter()
            .map(|(_, events)| {
                let event = |i: usize| BatchEvent { batch: &matched, columns: &columns, index: i };
                let first = event(events[0] as usize);
                let columns = vec![
                    AlertColumn {
                        name: "DeviceName".into(),
                        value: Value::Text(first.column(Column::DeviceName).into()),
                    },
                    one_column_set("set_Image", &events, &event, Column::FolderPath),
                    one_column_set("set_CommandLine", &events, &event, Column::ProcessCommandLine),
                    one_column_set("set_ParentImage", &events, &event, Column::InitiatingProcessFolderPath),
                    set_column(
                        "set_User",
                        &events,
                        |i| [event(i).range(Column::AccountDomain), event(i).range(Column::AccountName)],
                        |i| {
                            let mut user = String::new();
                            rulehost_sigma::matcher::render(View::User, &event(i), &mut user);
                            Cow::Owned(user)
                        },
                    ),
                ];
                Alert { columns, events }
            })
            .collect()
    }
}

#[allow(unsafe_code)]
mod exports {
    use super::{SigmaPack, bindings};
    bindings::export!(SigmaPack with_types_in bindings);
}
