//! Process lineage: neither Sysmon 1 nor 4688 names the grandparent, which rules pivot on
//! (`InitiatingProcessParentFileName`). The host keeps a table of the process creations it
//! has read, per device, and fills the grandparent of later events from it: the parent's
//! own creation event names the parent's parent.
//!
//! Sysmon events are keyed by `ProcessGuid` / `ParentProcessGuid`, unique per boot. 4688
//! has only process ids, which Windows reuses: a key is the device and the id, and a
//! lookup takes the latest creation of that id at or before the child's time.
//!
//! The table holds at most a fixed number of processes ([`DEFAULT_CAPACITY`]); past that
//! the oldest entries are evicted first, and an event whose parent was evicted keeps an
//! empty grandparent.

use std::collections::{HashMap, VecDeque};

use super::{Field, ProcessEvent, time};

/// Processes the table holds by default: ~200 bytes each, so about 50 MiB at most.
pub const DEFAULT_CAPACITY: usize = 262_144;

/// How a process is identified in its source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProcessKey {
    /// Sysmon's `ProcessGuid`, upper case without braces.
    Guid(String),
    /// A 4688 process id on a device (`DeviceId`).
    Pid {
        /// The device.
        device: String,
        /// The process id.
        pid: u64,
    },
}

impl ProcessKey {
    /// The bytes its text holds on the heap.
    fn heap_bytes(&self) -> usize {
        match self {
            ProcessKey::Guid(guid) => guid.capacity(),
            ProcessKey::Pid { device, .. } => device.capacity(),
        }
    }

    /// A GUID key from `{b34bc01c-...}` or `B34BC01C-...`; `None` when empty.
    pub fn guid(text: &str) -> Option<Self> {
        let trimmed = text.trim().trim_start_matches('{').trim_end_matches('}');
        (!trimmed.is_empty() && trimmed != "00000000-0000-0000-0000-000000000000")
            .then(|| ProcessKey::Guid(trimmed.to_ascii_uppercase()))
    }
}

/// The keys of a process-creation event: the new process's and its parent's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineageKeys {
    /// The created process.
    pub own: ProcessKey,
    /// Its parent.
    pub parent: ProcessKey,
}

impl LineageKeys {
    /// About how many bytes the keys hold, themselves and their text.
    pub fn size_in_memory(&self) -> usize {
        std::mem::size_of::<Self>() + self.own.heap_bytes() + self.parent.heap_bytes()
    }
}

/// What the table knows of one process, from its creation event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcessInfo {
    created_ms: i64,
    file_name: String,
    folder_path: String,
    parent_file_name: String,
    /// The parent's image path, when known: the grandparent's of a child.
    parent_folder_path: String,
    parent_id: String,
}

/// The tables' hasher: foldhash, seeded per process, as the keys come from the logs (SipHash
/// was a hundredth of reading a process creation from EVTX).
type Hasher = foldhash::fast::RandomState;

/// The process table.
#[derive(Debug)]
pub struct Lineage {
    by_guid: HashMap<String, ProcessInfo, Hasher>,
    by_pid: HashMap<(String, u64), Vec<ProcessInfo>, Hasher>,
    /// Insertion order, for eviction.
    order: VecDeque<(ProcessKey, i64)>,
    capacity: usize,
    evicted: u64,
}

impl Default for Lineage {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl Lineage {
    /// An empty table of at most `capacity` processes.
    pub fn new(capacity: usize) -> Self {
        Self {
            by_guid: HashMap::default(),
            by_pid: HashMap::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            evicted: 0,
        }
    }

    /// Processes held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Processes evicted so far to respect the capacity.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Fills the grandparent of `event` (and, for 4688 events that lack it, the parent)
    /// from its parent's creation, then records `event`'s own process. Events without
    /// lineage keys (Defender's, which carry the grandparent) are left alone.
    pub fn resolve_and_record(&mut self, event: &mut ProcessEvent) {
        if event.lineage().is_none() {
            // Nothing to look up or record (a Defender row names its grandparent itself).
            return;
        }
        self.resolve(event);
        let parent = (
            event.get(Field::InitiatingProcessFileName).to_owned(),
            event.get(Field::InitiatingProcessFolderPath).to_owned(),
        );
        self.record(event, parent);
    }

    /// Records `event`'s own process as [`Lineage::resolve_and_record`] would, and leaves
    /// `event` as it was read: for a first pass whose events are resolved later, against
    /// the whole table.
    pub fn learn(&mut self, event: &ProcessEvent) {
        let parent = match event.get(Field::InitiatingProcessFileName) {
            "" => {
                self.parent(event).map(|p| (p.file_name.clone(), p.folder_path.clone())).unwrap_or_default()
            }
            name => (name.to_owned(), event.get(Field::InitiatingProcessFolderPath).to_owned()),
        };
        self.record(event, parent);
    }

    /// Whether resolving `event` now gives what resolving it against every creation still
    /// to be read would: it has no lineage keys, or its parent is known by a `ProcessGuid`
    /// (unique, and the table keeps the first creation of each). A parent known by process
    /// id is not final: a creation of the same id read later may be the nearer one.
    pub fn is_final_for(&self, event: &ProcessEvent) -> bool {
        match event.lineage() {
            None => true,
            Some(keys) => matches!(keys.parent, ProcessKey::Guid(_)) && self.parent(event).is_some(),
        }
    }

    /// The creation of `event`'s parent, when the table holds it.
    fn parent(&self, event: &ProcessEvent) -> Option<&ProcessInfo> {
        match &event.lineage()?.parent {
            ProcessKey::Guid(guid) => self.by_guid.get(guid),
            ProcessKey::Pid { device, pid } => self
                .by_pid
                .get(&(device.clone(), *pid))
                .and_then(|entries| entries.iter().rev().find(|p| p.created_ms <= event.time_ms())),
        }
    }

    fn resolve(&self, event: &mut ProcessEvent) {
        // Read in place, not cloned: five strings copied twice per resolved event.
        let Some(parent) = self.parent(event) else { return };
        if event.get(Field::InitiatingProcessFileName).is_empty() {
            event.set(Field::InitiatingProcessFileName, &parent.file_name);
            event.set(Field::InitiatingProcessFolderPath, &parent.folder_path);
        }
        if event.get(Field::InitiatingProcessParentFileName).is_empty() {
            event.set(Field::InitiatingProcessParentFileName, &parent.parent_file_name);
        }
        if event.get(Field::InitiatingProcessParentFolderPath).is_empty() {
            event.set(Field::InitiatingProcessParentFolderPath, &parent.parent_folder_path);
        }
        if event.get(Field::InitiatingProcessParentId).is_empty() {
            event.set(Field::InitiatingProcessParentId, &parent.parent_id);
        }
        if event.get(Field::InitiatingProcessCreationTime).is_empty() {
            event.set(Field::InitiatingProcessCreationTime, time::format_ms(parent.created_ms));
        }
    }

    /// Records `event`'s own process, its parent's image being `parent_file_name` at
    /// `parent_folder_path`.
    fn record(&mut self, event: &ProcessEvent, (parent_file_name, parent_folder_path): (String, String)) {
        let Some(keys) = event.lineage() else { return };
        let info = ProcessInfo {
            created_ms: event.time_ms(),
            file_name: event.get(Field::FileName).to_owned(),
            folder_path: event.get(Field::FolderPath).to_owned(),
            parent_file_name,
            parent_folder_path,
            parent_id: event.get(Field::InitiatingProcessId).to_owned(),
        };
        let created_ms = info.created_ms;
        match &keys.own {
            ProcessKey::Guid(guid) => {
                if self.by_guid.contains_key(guid) {
                    return; // read before (a first pass over the same file)
                }
                self.by_guid.insert(guid.clone(), info);
            }
            ProcessKey::Pid { device, pid } => {
                let entries = self.by_pid.entry((device.clone(), *pid)).or_default();
                if entries.iter().any(|e| e.created_ms == created_ms) {
                    return;
                }
                let at = entries.partition_point(|e| e.created_ms < created_ms);
                entries.insert(at, info);
            }
        }
        self.order.push_back((keys.own.clone(), created_ms));
        while self.order.len() > self.capacity {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let Some((key, created_ms)) = self.order.pop_front() else { return };
        self.evicted += 1;
        match key {
            ProcessKey::Guid(guid) => {
                self.by_guid.remove(&guid);
            }
            ProcessKey::Pid { device, pid } => {
                let slot = (device, pid);
                if let Some(entries) = self.by_pid.get_mut(&slot) {
                    entries.retain(|e| e.created_ms != created_ms);
                    if entries.is_empty() {
                        self.by_pid.remove(&slot);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::events::{Origin, Position, SourceFormat};

    fn process(at: &str, keys: LineageKeys, parent: &str, file: &str) -> ProcessEvent {
        let origin = Origin { file: Arc::from("test"), position: Position::Line(1) };
        let mut event = ProcessEvent::new(time::parse(at).unwrap(), origin, SourceFormat::Evtx);
        event.set(Field::FileName, file);
        event.set(Field::InitiatingProcessFileName, parent);
        event.set(Field::InitiatingProcessId, "10");
        event.set_lineage(keys);
        event
    }

    fn pid(pid: u64) -> ProcessKey {
        ProcessKey::Pid { device: "web01".into(), pid }
    }

    #[test]
    fn the_grandparent_comes_from_the_parents_creation() {
        let mut lineage = Lineage::default();
        let g = |s: &str| ProcessKey::guid(s).unwrap();
        let mut parent = process(
            "2024-01-01T00:00:00Z",
            LineageKeys { own: g("{a}"), parent: g("{w}") },
            "w3wp.exe",
            "powershell.exe",
        );
        lineage.resolve_and_record(&mut parent);
        let mut child = process(
            "2024-01-01T00:00:01Z",
            LineageKeys { own: g("{b}"), parent: g("{A}") },
            "powershell.exe",
            "cmd.exe",
        );
        lineage.resolve_and_record(&mut child);
        assert_eq!(child.get(Field::InitiatingProcessParentFileName), "w3wp.exe");
        assert_eq!(child.get(Field::InitiatingProcessParentId), "10");
        assert_eq!(child.get(Field::InitiatingProcessCreationTime), "2024-01-01T00:00:00Z");
    }

    #[test]
    fn reused_pids_resolve_to_the_latest_earlier_creation() {
        let mut lineage = Lineage::default();
        let mut first = process(
            "2024-01-01T00:00:00Z",
            LineageKeys { own: pid(100), parent: pid(1) },
            "w3wp.exe",
            "powershell.exe",
        );
        let mut second = process(
            "2024-01-01T05:00:00Z",
            LineageKeys { own: pid(100), parent: pid(2) },
            "explorer.exe",
            "notepad.exe",
        );
        lineage.resolve_and_record(&mut first);
        lineage.resolve_and_record(&mut second);
        let mut early =
            process("2024-01-01T01:00:00Z", LineageKeys { own: pid(200), parent: pid(100) }, "", "cmd.exe");
        lineage.resolve_and_record(&mut early);
        assert_eq!(early.get(Field::InitiatingProcessParentFileName), "w3wp.exe");
        assert_eq!(early.get(Field::InitiatingProcessFileName), "powershell.exe", "4688 v1 lacks the parent");
        let mut late = process(
            "2024-01-01T06:00:00Z",
            LineageKeys { own: pid(201), parent: pid(100) },
            "notepad.exe",
            "cmd.exe",
        );
        lineage.resolve_and_record(&mut late);
        assert_eq!(late.get(Field::InitiatingProcessParentFileName), "explorer.exe");
        let mut before_any = process(
            "2023-12-31T23:00:00Z",
            LineageKeys { own: pid(202), parent: pid(100) },
            "x.exe",
            "cmd.exe",
        );
        lineage.resolve_and_record(&mut before_any);
        assert_eq!(before_any.get(Field::InitiatingProcessParentFileName), "", "no creation before it");
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_oldest() {
        let mut lineage = Lineage::new(2);
        for i in 0..5u64 {
            let mut e = process(
                "2024-01-01T00:00:00Z",
                LineageKeys { own: pid(i), parent: pid(1000) },
                "p.exe",
                "c.exe",
            );
            lineage.resolve_and_record(&mut e);
        }
        assert_eq!(lineage.len(), 2);
        assert_eq!(lineage.evicted(), 3);
        let mut child =
            process("2024-01-01T00:00:01Z", LineageKeys { own: pid(9), parent: pid(0) }, "c.exe", "cmd.exe");
        lineage.resolve_and_record(&mut child);
        assert_eq!(child.get(Field::InitiatingProcessParentFileName), "", "pid 0 was evicted");
        let mut child =
            process("2024-01-01T00:00:01Z", LineageKeys { own: pid(10), parent: pid(4) }, "c.exe", "cmd.exe");
        lineage.resolve_and_record(&mut child);
        assert_eq!(child.get(Field::InitiatingProcessParentFileName), "p.exe");
    }

    #[test]
    fn recording_twice_is_harmless() {
        let mut lineage = Lineage::default();
        let mut e =
            process("2024-01-01T00:00:00Z", LineageKeys { own: pid(1), parent: pid(2) }, "p.exe", "c.exe");
        lineage.resolve_and_record(&mut e);
        lineage.resolve_and_record(&mut e);
        assert_eq!(lineage.len(), 1);
    }
}
