//! Windows event logs: Sysmon event 1 and Security-Auditing event 4688, whatever shape
//! they were stored in, normalized into the `DeviceProcessEvents` event.
//!
//! Each shape (binary EVTX, EVTX XML, evtx_dump JSON, Winlogbeat, HELK/NXLog flat JSON,
//! Sentinel `WindowsEvent` / `SecurityEvent`) is first read into a [`WinEvent`]: the
//! `System` facts and the `EventData` name/value pairs. One mapping then turns a
//! `WinEvent` into a [`ProcessEvent`]; events that are not process creations are skipped.

mod dismiss;
pub(super) mod evtx;
mod evtx_binxml;
pub(super) mod evtx_chunks;
pub(super) mod json;
pub(super) mod xml;

use std::borrow::Cow;

pub(super) use dismiss::dismiss;

/// The shared data's folder, for the tests that read its real logs.
#[cfg(test)]
fn tests_shared_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

use super::lineage::{LineageKeys, ProcessKey};
use super::{Field, Origin, ProcessEvent, Record, RecordError, RejectReason, Skipped, SourceFormat, time};

/// The Sysmon channel.
const SYSMON_CHANNEL: &str = "Microsoft-Windows-Sysmon/Operational";
/// The Security channel.
const SECURITY_CHANNEL: &str = "Security";
/// Sysmon: process creation.
const SYSMON_PROCESS_CREATE: u32 = 1;
/// Security-Auditing: a new process has been created.
const SECURITY_PROCESS_CREATE: u32 = 4688;

/// A Windows event as every shape can describe it.
/// `EventData` borrows from the text it was read from where it can.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct WinEvent<'a> {
    /// `System/Provider/@Name`.
    pub provider: String,
    /// `System/Channel`.
    pub channel: String,
    /// `System/EventID`.
    pub event_id: Option<u32>,
    /// `System/Version` (4688 has `ParentProcessName` from version 2 on).
    pub version: Option<u32>,
    /// `System/Computer`.
    pub computer: String,
    /// `System/EventRecordID`.
    pub record_id: Option<u64>,
    /// `System/TimeCreated/@SystemTime`, as written.
    pub system_time: Option<String>,
    /// `EventData/Data[@Name]` values.
    pub data: EventData<'a>,
}

/// `EventData/Data[@Name]` values, of the names the normalization reads ([`READ_DATA_NAMES`]):
/// every reader leaves the others out, as this keeps none. Each name has its place, so a
/// reader that knows a name's place ([`DataName`]) keeps its value without looking the name
/// up, and the normalization reads it without hashing: inserting a process creation's values
/// into a hash map, growing it and dropping it took 6% of the threads that read EVTX files.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct EventData<'a> {
    values: [Option<Cow<'a, str>>; READ_DATA_NAMES.len()],
}

impl Default for EventData<'_> {
    fn default() -> Self {
        Self { values: std::array::from_fn(|_| None) }
    }
}

impl<'a> EventData<'a> {
    /// The value of `name`, if it was given.
    pub(super) fn get(&self, name: &str) -> Option<&Cow<'a, str>> {
        DataName::of(name).and_then(|name| self.values[name.0].as_ref())
    }

    /// Whether `name` was given.
    pub(super) fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Keeps `value` under `name` in place of any value it had; a name that is not read is
    /// left out.
    pub(super) fn insert(&mut self, name: &str, value: impl Into<Cow<'a, str>>) {
        if let Some(name) = DataName::of(name) {
            self.set(name, value.into());
        }
    }

    /// Keeps `value` under `name`, in place of any value it had.
    pub(super) fn set(&mut self, name: DataName, value: Cow<'a, str>) {
        self.values[name.0] = Some(value);
    }

    /// The value of `name`, given as empty if it was not given yet; `None` for a name that is
    /// not read.
    pub(super) fn value_mut(&mut self, name: &str) -> Option<&mut Cow<'a, str>> {
        DataName::of(name).map(|name| self.values[name.0].get_or_insert_default())
    }

    /// The values given.
    pub(super) fn values(&self) -> impl Iterator<Item = &Cow<'a, str>> {
        self.values.iter().flatten()
    }
}

impl<'a, N: AsRef<str>, V: Into<Cow<'a, str>>> FromIterator<(N, V)> for EventData<'a> {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(items: I) -> Self {
        let mut data = EventData::default();
        for (name, value) in items {
            data.insert(name.as_ref(), value);
        }
        data
    }
}

// Only the tests read a value by indexing, as they read the map this replaced.
#[cfg(test)]
impl<'a> std::ops::Index<&str> for EventData<'a> {
    type Output = Cow<'a, str>;

    /// The value of `name`; panics if it was not given, as a map's index does.
    fn index(&self, name: &str) -> &Cow<'a, str> {
        self.get(name).unwrap_or_else(|| panic!("no value of EventData {name:?}"))
    }
}

impl WinEvent<'_> {
    fn data(&self, name: DataName) -> &str {
        self.data.values[name.0].as_deref().unwrap_or("")
    }

    fn is_sysmon(&self) -> bool {
        self.channel.eq_ignore_ascii_case(SYSMON_CHANNEL)
            || self.provider.eq_ignore_ascii_case("Microsoft-Windows-Sysmon")
    }

    fn is_security(&self) -> bool {
        self.channel.eq_ignore_ascii_case(SECURITY_CHANNEL)
            || self.provider.eq_ignore_ascii_case("Microsoft-Windows-Security-Auditing")
    }

    /// What kind of event this is, for the skipped counts: `Sysmon 3`, `Security 4624`.
    fn kind(&self) -> String {
        let id = self.event_id.map_or_else(|| "?".to_owned(), |id| id.to_string());
        if self.is_sysmon() {
            format!("Sysmon {id}")
        } else if self.is_security() {
            format!("Security {id}")
        } else {
            let source = if self.channel.is_empty() { &self.provider } else { &self.channel };
            format!("{source} {id}")
        }
    }
}

/// A name of `EventData/Data` that the normalization reads, by its place in
/// [`READ_DATA_NAMES`]: only through these is a record's data read, so that list holds every
/// name it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DataName(usize);

impl DataName {
    /// `name` as the normalization reads it, if it reads it.
    pub(super) fn of(name: &str) -> Option<DataName> {
        READ_DATA_NAMES.iter().position(|read| *read == name).map(DataName)
    }

    /// The name whose text is `name`, which [`READ_DATA_NAMES`] must hold (checked when
    /// compiled: the constants below are made by it).
    const fn named(name: &str) -> DataName {
        let mut at = 0;
        while at < READ_DATA_NAMES.len() {
            if same_bytes(READ_DATA_NAMES[at], name) {
                return DataName(at);
            }
            at += 1;
        }
        panic!("a data name that READ_DATA_NAMES does not hold")
    }
}

/// `a == b`, where a `const fn` may compare them.
const fn same_bytes(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut at = 0;
    while at < a.len() {
        if a[at] != b[at] {
            return false;
        }
        at += 1;
    }
    true
}

macro_rules! data_names {
    ($($constant:ident = $name:literal,)*) => {
        $(const $constant: DataName = DataName::named($name);)*
        /// Every `EventData` name the normalization reads: a reader leaves the others out.
        const READ_DATA_NAMES: &[&str] = &[$($name),*];
    };
}

data_names! {
    UTC_TIME = "UtcTime",
    IMAGE = "Image",
    PROCESS_ID = "ProcessId",
    COMMAND_LINE = "CommandLine",
    INTEGRITY_LEVEL = "IntegrityLevel",
    USER = "User",
    HASHES = "Hashes",
    ORIGINAL_FILE_NAME = "OriginalFileName",
    DESCRIPTION = "Description",
    PRODUCT = "Product",
    COMPANY = "Company",
    FILE_VERSION = "FileVersion",
    CURRENT_DIRECTORY = "CurrentDirectory",
    LOGON_ID = "LogonId",
    PARENT_IMAGE = "ParentImage",
    PARENT_COMMAND_LINE = "ParentCommandLine",
    PARENT_PROCESS_ID = "ParentProcessId",
    PARENT_USER = "ParentUser",
    NEW_PROCESS_NAME = "NewProcessName",
    NEW_PROCESS_ID = "NewProcessId",
    TOKEN_ELEVATION_TYPE = "TokenElevationType",
    MANDATORY_LABEL = "MandatoryLabel",
    TARGET_USER_SID = "TargetUserSid",
    TARGET_USER_NAME = "TargetUserName",
    TARGET_DOMAIN_NAME = "TargetDomainName",
    TARGET_LOGON_ID = "TargetLogonId",
    SUBJECT_DOMAIN_NAME = "SubjectDomainName",
    SUBJECT_USER_NAME = "SubjectUserName",
    SUBJECT_USER_SID = "SubjectUserSid",
    SUBJECT_LOGON_ID = "SubjectLogonId",
    PARENT_PROCESS_NAME = "ParentProcessName",
    PROCESS_GUID = "ProcessGuid",
    PARENT_PROCESS_GUID = "ParentProcessGuid",
}

/// Appends `n` in decimal, as `Display` writes it, without its machinery: it runs for most
/// records of a Windows log (a dismissed line's kind, a SID's numbers).
pub(super) fn push_decimal(out: &mut String, n: u64) {
    // `itoa`: two digits at a time, and no check of them as UTF-8 (which cost more than
    // writing them: SIDs of 4688 records are eight numbers each).
    out.push_str(itoa::Buffer::new().format(n));
}

/// `n` in decimal, as [`push_decimal`] writes it.
pub(super) fn decimal(n: u64) -> String {
    itoa::Buffer::new().format(n).to_owned()
}

/// Normalizes a Windows event: a process creation becomes an event, anything else is
/// skipped.
pub(super) fn normalize(event: WinEvent<'_>, origin: Origin, format: SourceFormat) -> Record {
    let result = match event.event_id {
        Some(SYSMON_PROCESS_CREATE) if event.is_sysmon() => sysmon_process_create(&event, origin, format),
        Some(SECURITY_PROCESS_CREATE) if event.is_security() => {
            security_process_create(&event, origin, format)
        }
        _ => return Record::Skipped(Skipped { origin, kind: event.kind() }),
    };
    match result {
        Ok(event) => Record::Event(Box::new(event)),
        Err(error) => Record::Rejected(error),
    }
}

/// About the bytes of the text of the event `e` makes: its data's values (most are copied
/// once; the `images`' file names once more), its device twice, and what the normalization
/// writes of its own (times, ids, the action). Grown as it was written instead, from a
/// Defender row's size, the text of a Sysmon record was reallocated once or twice.
fn text_bytes(e: &WinEvent<'_>, images: [DataName; 2]) -> usize {
    e.data.values().map(|v| v.len()).sum::<usize>()
        + images.iter().map(|&name| e.data(name).len()).sum::<usize>()
        + 2 * e.computer.len()
        + NORMALIZATION_BYTES
}

/// What the normalization of a process creation writes besides its record's values, with
/// room to spare: two times of 24 bytes, the action, ids and numbers.
const NORMALIZATION_BYTES: usize = 160;

/// Sysmon event 1. `UtcTime` is the process's creation time in UTC.
fn sysmon_process_create(
    e: &WinEvent<'_>,
    origin: Origin,
    format: SourceFormat,
) -> Result<ProcessEvent, RecordError> {
    let utc_time = e.data(UTC_TIME);
    let time = event_time(e, if utc_time.is_empty() { None } else { Some(utc_time) }, &origin)?;
    let mut event =
        ProcessEvent::with_text_capacity(time, origin, format, text_bytes(e, [IMAGE, PARENT_IMAGE]));
    set_device(&mut event, &e.computer);
    event.set(Field::ActionType, "ProcessCreated");
    set_image(&mut event, e.data(IMAGE), Field::FileName, Field::FolderPath);
    event.set(Field::ProcessId, decimal_pid(e.data(PROCESS_ID)));
    event.set(Field::ProcessCommandLine, e.data(COMMAND_LINE));
    event.set_from(Field::ProcessCreationTime, Field::Timestamp);
    event.set(Field::ProcessIntegrityLevel, e.data(INTEGRITY_LEVEL));
    set_account(&mut event, e.data(USER), Field::AccountDomain, Field::AccountName);
    for (algorithm, hash) in hashes(e.data(HASHES)) {
        match algorithm.to_ascii_uppercase().as_str() {
            "SHA1" => event.set(Field::Sha1, hash.to_ascii_lowercase()),
            "SHA256" => event.set(Field::Sha256, hash.to_ascii_lowercase()),
            "MD5" => event.set(Field::Md5, hash.to_ascii_lowercase()),
            "IMPHASH" => event.set(Field::Imphash, hash.to_ascii_lowercase()),
            _ => {}
        }
    }
    event.set(Field::ProcessVersionInfoOriginalFileName, e.data(ORIGINAL_FILE_NAME));
    event.set(Field::ProcessVersionInfoFileDescription, e.data(DESCRIPTION));
    event.set(Field::ProcessVersionInfoProductName, e.data(PRODUCT));
    event.set(Field::ProcessVersionInfoCompanyName, e.data(COMPANY));
    event.set(Field::ProcessVersionInfoProductVersion, e.data(FILE_VERSION));
    event.set(Field::ProcessCurrentDirectory, e.data(CURRENT_DIRECTORY));
    event.set(Field::LogonId, e.data(LOGON_ID));
    set_image(
        &mut event,
        e.data(PARENT_IMAGE),
        Field::InitiatingProcessFileName,
        Field::InitiatingProcessFolderPath,
    );
    event.set(Field::InitiatingProcessCommandLine, e.data(PARENT_COMMAND_LINE));
    event.set(Field::InitiatingProcessId, decimal_pid(e.data(PARENT_PROCESS_ID)));
    set_account(
        &mut event,
        e.data(PARENT_USER),
        Field::InitiatingProcessAccountDomain,
        Field::InitiatingProcessAccountName,
    );
    set_report_id(&mut event, e.record_id);
    let guid = |name: DataName| ProcessKey::guid(e.data(name));
    if let (Some(own), Some(parent)) = (guid(PROCESS_GUID), guid(PARENT_PROCESS_GUID)) {
        event.set_lineage(LineageKeys { own, parent });
    }
    Ok(event)
}

/// Security-Auditing event 4688.
///
/// The account fields: `Subject*` is the account of the creator (the parent), `Target*`
/// (version 2) the account of the new process when it differs from the creator's, and
/// `-` / `S-1-0-0` when it does not. So `Account*` is `Target*` when that names an
/// account and `Subject*` otherwise, and `InitiatingProcessAccount*` is `Subject*`.
fn security_process_create(
    e: &WinEvent<'_>,
    origin: Origin,
    format: SourceFormat,
) -> Result<ProcessEvent, RecordError> {
    let time = event_time(e, None, &origin)?;
    let mut event = ProcessEvent::with_text_capacity(
        time,
        origin,
        format,
        text_bytes(e, [NEW_PROCESS_NAME, PARENT_PROCESS_NAME]),
    );
    set_device(&mut event, &e.computer);
    event.set(Field::ActionType, "ProcessCreated");
    set_image(&mut event, e.data(NEW_PROCESS_NAME), Field::FileName, Field::FolderPath);
    let pid = decimal_pid(e.data(NEW_PROCESS_ID));
    event.set(Field::ProcessId, pid.clone());
    event.set(Field::ProcessCommandLine, e.data(COMMAND_LINE));
    event.set_from(Field::ProcessCreationTime, Field::Timestamp);
    event.set(Field::ProcessTokenElevation, token_elevation(e.data(TOKEN_ELEVATION_TYPE)));
    event.set(Field::ProcessIntegrityLevel, integrity_level(e.data(MANDATORY_LABEL)));
    let target_named = !matches!(e.data(TARGET_USER_SID), "" | "S-1-0-0" | "-")
        && !matches!(e.data(TARGET_USER_NAME), "" | "-");
    let (domain, name, sid, logon_id) = if target_named {
        (
            e.data(TARGET_DOMAIN_NAME),
            e.data(TARGET_USER_NAME),
            e.data(TARGET_USER_SID),
            e.data(TARGET_LOGON_ID),
        )
    } else {
        (
            e.data(SUBJECT_DOMAIN_NAME),
            e.data(SUBJECT_USER_NAME),
            e.data(SUBJECT_USER_SID),
            e.data(SUBJECT_LOGON_ID),
        )
    };
    event.set(Field::LogonId, logon_id);
    event.set(Field::AccountDomain, domain);
    event.set(Field::AccountName, name);
    event.set(Field::AccountSid, sid);
    event.set(Field::InitiatingProcessAccountDomain, e.data(SUBJECT_DOMAIN_NAME));
    event.set(Field::InitiatingProcessAccountName, e.data(SUBJECT_USER_NAME));
    event.set(Field::InitiatingProcessAccountSid, e.data(SUBJECT_USER_SID));
    set_image(
        &mut event,
        e.data(PARENT_PROCESS_NAME),
        Field::InitiatingProcessFileName,
        Field::InitiatingProcessFolderPath,
    );
    let parent_pid = decimal_pid(e.data(PROCESS_ID));
    event.set(Field::InitiatingProcessId, parent_pid.clone());
    set_report_id(&mut event, e.record_id);
    let device = event.get(Field::DeviceId).to_owned();
    if let (Ok(pid), Ok(parent_pid)) = (pid.parse(), parent_pid.parse()) {
        event.set_lineage(LineageKeys {
            own: ProcessKey::Pid { device: device.clone(), pid },
            parent: ProcessKey::Pid { device, pid: parent_pid },
        });
    }
    Ok(event)
}

/// The event's time: `preferred` (Sysmon's `UtcTime`) or `System/TimeCreated`.
fn event_time(
    e: &WinEvent<'_>,
    preferred: Option<&str>,
    origin: &Origin,
) -> Result<chrono::DateTime<chrono::Utc>, RecordError> {
    let reject = |reason| RecordError { origin: origin.clone(), reason };
    let text =
        preferred.or(e.system_time.as_deref()).ok_or_else(|| reject(RejectReason::MissingTimestamp))?;
    time::parse(text).ok_or_else(|| reject(RejectReason::BadTimestamp(text.to_owned())))
}

/// `DeviceName` is the computer as logged; `DeviceId`, which Windows logs do not carry, is
/// the computer name in lower case, so that one host's Sysmon and Security events share it.
fn set_device(event: &mut ProcessEvent, computer: &str) {
    event.set(Field::DeviceName, computer);
    event.set(Field::DeviceId, computer.to_lowercase());
}

/// `FolderPath` is the whole path, as Defender reports it; the file name is its base name.
fn set_image(event: &mut ProcessEvent, path: &str, name: Field, folder: Field) {
    event.set(name, base_name(path));
    event.set(folder, path);
}

/// `DOMAIN\user` into its two fields.
fn set_account(event: &mut ProcessEvent, account: &str, domain: Field, name: Field) {
    match account.split_once('\\') {
        Some((d, n)) => {
            event.set(domain, d);
            event.set(name, n);
        }
        None => event.set(name, account),
    }
}

/// The base name of a Windows path of any shape (`C:\..`, `\Device\HarddiskVolume2\..`,
/// `\\?\C:\..`, `/`-separated), in the case the log reports: the rules' `in` is
/// case-sensitive, so no case is changed here.
pub(crate) fn base_name(path: &str) -> &str {
    let path = path.trim_end_matches(['\\', '/']);
    path.rsplit(['\\', '/']).next().unwrap_or(path)
}

/// `ReportId`: the record's `EventRecordID`, empty without one.
fn set_report_id(event: &mut ProcessEvent, record_id: Option<u64>) {
    let mut digits = itoa::Buffer::new();
    event.set(Field::ReportId, record_id.map_or("", |id| digits.format(id)));
}

/// A process id as decimal text: 4688 writes `0x1a2c`, Sysmon and ECS write decimal.
fn decimal_pid(text: &str) -> String {
    let text = text.trim();
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse::<u64>().ok(),
    };
    parsed.map_or_else(|| text.to_owned(), decimal)
}

/// Sysmon's `Hashes`: `SHA1=..,MD5=..,SHA256=..,IMPHASH=..`.
fn hashes(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.split(',').filter_map(|pair| pair.trim().split_once('='))
}

/// 4688's `TokenElevationType` (`%%1936`..`%%1938`) as Defender names it.
fn token_elevation(text: &str) -> &str {
    match text.trim() {
        "%%1936" => "TokenElevationTypeDefault",
        "%%1937" => "TokenElevationTypeFull",
        "%%1938" => "TokenElevationTypeLimited",
        other => other,
    }
}

/// 4688's `MandatoryLabel` SID as an integrity level.
fn integrity_level(sid: &str) -> &str {
    match sid.trim() {
        "S-1-16-0" => "Untrusted",
        "S-1-16-4096" => "Low",
        "S-1-16-8192" => "Medium",
        "S-1-16-8448" => "MediumPlus",
        "S-1-16-12288" => "High",
        "S-1-16-16384" => "System",
        "S-1-16-20480" => "ProtectedProcess",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_of_every_path_shape() {
        let cases = [
            ("C:\\Windows\\System32\\cmd.exe", "cmd.exe"),
            ("\\Device\\HarddiskVolume2\\Windows\\System32\\W3WP.EXE", "W3WP.EXE"),
            ("\\\\?\\C:\\Program Files\\Apache\\bin\\httpd.exe", "httpd.exe"),
            ("\\\\server\\share\\tools\\tomcat9.exe", "tomcat9.exe"),
            ("/usr/sbin/httpd", "httpd"),
            ("C:/inetpub/w3wp.exe", "w3wp.exe"),
            ("cmd.exe", "cmd.exe"),
            ("C:\\weird\\", "weird"),
            ("", ""),
        ];
        for (path, name) in cases {
            assert_eq!(base_name(path), name, "{path}");
        }
    }

    #[test]
    fn pids_hex_or_decimal() {
        assert_eq!(decimal_pid("0x1a2c"), "6700");
        assert_eq!(decimal_pid("0X1A2C"), "6700");
        assert_eq!(decimal_pid("3412"), "3412");
        assert_eq!(decimal_pid(""), "");
        assert_eq!(decimal_pid("zz"), "zz");
    }

    #[test]
    fn event_data_keeps_each_read_name_in_a_place_of_its_own() {
        let mut unique = READ_DATA_NAMES.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), READ_DATA_NAMES.len(), "a name is listed twice");
        let mut data = EventData::default();
        for (at, name) in READ_DATA_NAMES.iter().enumerate() {
            data.insert(name, format!("value {at}"));
        }
        data.insert("NotRead", "x");
        for (at, name) in READ_DATA_NAMES.iter().enumerate() {
            assert_eq!(data[*name], format!("value {at}"), "{name}");
        }
        assert_eq!(data.values().count(), READ_DATA_NAMES.len());
        assert!(!data.contains_key("NotRead"), "a name that is not read is left out");
        // The constants the normalization reads by are the places of their names.
        let event = WinEvent { data: data.clone(), ..WinEvent::default() };
        for (constant, name) in
            [(IMAGE, "Image"), (UTC_TIME, "UtcTime"), (PARENT_PROCESS_GUID, "ParentProcessGuid")]
        {
            assert_eq!(event.data(constant), data[name], "{name}");
            assert_eq!(DataName::of(name), Some(constant));
        }
        // A value given again replaces the one before (a JSON object's last member wins); an
        // XML element's pieces are appended to the value it opened.
        data.insert("Image", "again");
        assert_eq!(data["Image"], "again");
        let mut xml = EventData::default();
        for piece in ["C:\\a", "\\b.exe"] {
            xml.value_mut("Image").expect("read").to_mut().push_str(piece);
        }
        assert_eq!(xml["Image"], "C:\\a\\b.exe");
        assert!(xml.value_mut("NotRead").is_none());
        let collected: EventData<'_> = [("CommandLine", "a b"), ("Other", "c")].into_iter().collect();
        assert_eq!(collected.values().collect::<Vec<_>>(), ["a b"]);
    }
}
