#!/usr/bin/env python3
"""Writes the Windows fixtures of tests/data/windows: one scenario in every shape.

Host WEB01.contoso.com runs IIS. svchost.exe starts w3wp.exe; w3wp.exe starts
`cmd.exe /c whoami` (a match through the parent) and powershell.exe; powershell.exe
starts `cmd.exe /c ipconfig /all` (a match through the grandparent). Sysmon (event 1) and
Security auditing (event 4688, version 2) both log the four creations, so each match is
seen twice. A Sysmon 3 and a Security 4624 event are there to be skipped.

Run it from this folder; the files are committed, this script says how they were made.
"""
import gzip, json, zipfile, io

HOST = "WEB01.contoso.com"
SYSMON = "Microsoft-Windows-Sysmon"
SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"
SECURITY = "Microsoft-Windows-Security-Auditing"
W = r"C:\Windows\System32\inetsrv\w3wp.exe"
CMD = r"C:\Windows\System32\cmd.exe"
PS = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
SVC = r"C:\Windows\System32\svchost.exe"
POOL = r"IIS APPPOOL\DefaultAppPool"

def sysmon1(rid, t, guid, pid, image, cmd, pguid, ppid, pimage, pcmd):
    return dict(provider=SYSMON, channel=SYSMON_CHANNEL, id=1, version=5, rid=rid, time=t + "1Z", data={
        "RuleName": "-", "UtcTime": t.replace("T", " ")[:23], "ProcessGuid": guid, "ProcessId": str(pid),
        "Image": image, "FileVersion": "10.0.17763.1", "Description": "-", "Product": "-", "Company": "Microsoft Corporation",
        "OriginalFileName": image.rsplit("\\", 1)[1], "CommandLine": cmd, "CurrentDirectory": "c:\\windows\\system32\\inetsrv\\",
        "User": POOL if image != W else "IIS APPPOOL\\DefaultAppPool", "LogonGuid": "{5b4a8ac6-0a1d-5f2c-0000-0020e7030000}",
        "LogonId": "0x3e7", "TerminalSessionId": "0", "IntegrityLevel": "High",
        "Hashes": "SHA1=F1EFB0FDDC156E4C61C5F78A54700E4E7984D55D,MD5=911D039E71583A07320B32BDE22F8E22,SHA256=B99D61D874728EDC0918CA0EB10EAB93D381E7367E377406E65963366C874450,IMPHASH=272245E2988E1E430500B852C4FB5E18",
        "ParentProcessGuid": pguid, "ParentProcessId": str(ppid), "ParentImage": pimage, "ParentCommandLine": pcmd,
        "ParentUser": "NT AUTHORITY\\SYSTEM" if pimage == SVC else POOL})

def sec4688(rid, t, pid, image, cmd, ppid, pimage):
    return dict(provider=SECURITY, channel="Security", id=4688, version=2, rid=rid, time=t + "Z", data={
        "SubjectUserSid": "S-1-5-82-3006700770-424185619-1745488364-794895919-4004696415" if pimage != SVC else "S-1-5-18",
        "SubjectUserName": "DefaultAppPool" if pimage != SVC else "WEB01$", "SubjectDomainName": "IIS APPPOOL" if pimage != SVC else "CONTOSO",
        "SubjectLogonId": "0x3e7", "NewProcessId": hex(pid), "NewProcessName": image, "TokenElevationType": "%%1936",
        "ProcessId": hex(ppid), "CommandLine": cmd, "TargetUserSid": "S-1-0-0", "TargetUserName": "-", "TargetDomainName": "-",
        "TargetLogonId": "0x0", "ParentProcessName": pimage, "MandatoryLabel": "S-1-16-12288"})

GW, GC1, GP, GC2 = ("{5b4a8ac6-1c01-6630-a101-000000001c00}", "{5b4a8ac6-1c10-6630-a201-000000001c00}",
                    "{5b4a8ac6-1c11-6630-a301-000000001c00}", "{5b4a8ac6-1c20-6630-a401-000000001c00}")
GSVC = "{5b4a8ac6-0a1e-5f2c-0c00-000000001c00}"
EVENTS = [
    sysmon1(5001, "2024-04-29T14:02:11.20", GW, 4096, W, r"c:\windows\system32\inetsrv\w3wp.exe -ap DefaultAppPool", GSVC, 812, SVC, r"C:\Windows\system32\svchost.exe -k iissvcs"),
    sec4688(9001, "2024-04-29T14:02:11.201", 4096, W, r"c:\windows\system32\inetsrv\w3wp.exe -ap DefaultAppPool", 812, SVC),
    sysmon1(5002, "2024-04-29T14:05:40.50", GC1, 4352, CMD, r"cmd.exe /c whoami", GW, 4096, W, r"c:\windows\system32\inetsrv\w3wp.exe -ap DefaultAppPool"),
    sec4688(9002, "2024-04-29T14:05:40.501", 4352, CMD, r"cmd.exe /c whoami", 4096, W),
    sysmon1(5003, "2024-04-29T14:06:02.10", GP, 4608, PS, r"powershell.exe -nop -w hidden -c Get-ChildItem C:\inetpub", GW, 4096, W, r"c:\windows\system32\inetsrv\w3wp.exe -ap DefaultAppPool"),
    sec4688(9003, "2024-04-29T14:06:02.101", 4608, PS, r"powershell.exe -nop -w hidden -c Get-ChildItem C:\inetpub", 4096, W),
    dict(provider=SYSMON, channel=SYSMON_CHANNEL, id=3, version=5, rid=5004, time="2024-04-29T14:06:03.0000001Z", data={
        "RuleName": "-", "UtcTime": "2024-04-29 14:06:03.000", "ProcessGuid": GP, "ProcessId": "4608", "Image": PS,
        "User": POOL, "Protocol": "tcp", "Initiated": "true", "SourceIp": "10.0.0.5", "SourcePort": "50112",
        "DestinationIp": "203.0.113.9", "DestinationPort": "443"}),
    sysmon1(5005, "2024-04-29T14:06:30.75", GC2, 4864, CMD, r"cmd.exe /c ipconfig /all", GP, 4608, PS, r"powershell.exe -nop -w hidden -c Get-ChildItem C:\inetpub"),
    sec4688(9004, "2024-04-29T14:06:30.751", 4864, CMD, r"cmd.exe /c ipconfig /all", 4608, PS),
    dict(provider=SECURITY, channel="Security", id=4624, version=2, rid=9005, time="2024-04-29T14:07:00.000Z", data={
        "SubjectUserSid": "S-1-5-18", "TargetUserName": "alice", "TargetDomainName": "CONTOSO", "LogonType": "3",
        "IpAddress": "10.0.0.9"}),
]

def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")

def xml_event(e):
    data = "".join(f'<Data Name="{k}">{esc(v)}</Data>' for k, v in e["data"].items())
    return (f'<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System><Provider Name="{e["provider"]}"/>'
            f'<EventID>{e["id"]}</EventID><Version>{e["version"]}</Version><Level>4</Level><Task>1</Task><Opcode>0</Opcode>'
            f'<Keywords>0x8000000000000000</Keywords><TimeCreated SystemTime="{e["time"]}"/><EventRecordID>{e["rid"]}</EventRecordID>'
            f'<Correlation/><Execution ProcessID="2412" ThreadID="3100"/><Channel>{e["channel"]}</Channel><Computer>{HOST}</Computer>'
            f'<Security UserID="S-1-5-18"/></System><EventData>{data}</EventData></Event>')

def dump_json(e):
    def num(k, v):
        return int(v) if k in ("ProcessId", "ParentProcessId") and v.isdigit() else v
    return {"Event": {"#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"}, "System": {
        "Provider": {"#attributes": {"Name": e["provider"]}}, "EventID": e["id"], "Version": e["version"], "Level": 4,
        "TimeCreated": {"#attributes": {"SystemTime": e["time"]}}, "EventRecordID": e["rid"], "Correlation": None,
        "Channel": e["channel"], "Computer": HOST, "Security": {"#attributes": {"UserID": "S-1-5-18"}}},
        "EventData": {k: num(k, v) for k, v in e["data"].items()}}}

def winlogbeat(e):
    d = dict(e["data"])
    doc = {"@timestamp": e["time"][:23] + "Z", "host": {"name": HOST.lower()}, "winlog": {
        "channel": e["channel"], "provider_name": e["provider"], "event_id": str(e["id"]), "record_id": e["rid"],
        "computer_name": HOST, "version": e["version"], "api": "wineventlog"}, "event": {"code": str(e["id"])}}
    if e["provider"] == SYSMON and e["id"] == 1:
        # The Sysmon module moves these to ECS fields.
        doc["process"] = {"executable": d.pop("Image"), "command_line": d.pop("CommandLine"), "pid": int(d.pop("ProcessId")),
                          "entity_id": d.pop("ProcessGuid"), "name": e["data"]["Image"].rsplit("\\", 1)[1],
                          "parent": {"executable": d.pop("ParentImage"), "command_line": d.pop("ParentCommandLine"),
                                     "pid": int(d.pop("ParentProcessId")), "entity_id": d.pop("ParentProcessGuid")},
                          "hash": {"sha1": "f1efb0fddc156e4c61c5f78a54700e4e7984d55d", "md5": "911d039e71583a07320b32bde22f8e22",
                                   "sha256": "b99d61d874728edc0918ca0eb10eab93d381e7367e377406e65963366c874450"}}
        dom, name = d.pop("User").split("\\")
        doc["user"] = {"domain": dom, "name": name}
        d.pop("Hashes")
    doc["winlog"]["event_data"] = d
    return doc

def flat(e):
    d = {"EventID": e["id"], "Channel": e["channel"] if e["channel"] != "Security" else "security", "SourceName": e["provider"],
         "Hostname": HOST, "RecordNumber": e["rid"], "@timestamp": e["time"][:23] + "Z", "EventTime": "2024-04-29 10:0x:xx",
         "Version": e["version"], "tags": ["fixture"]}
    d.update(e["data"])
    return d

def sentinel(e):
    if e["provider"] == SYSMON:
        return {"TenantId": "redacted", "TimeGenerated": e["time"][:23] + "Z", "Provider": SYSMON, "Channel": SYSMON_CHANNEL,
                "Computer": HOST, "EventID": e["id"], "EventData": json.dumps(e["data"]), "Type": "WindowsEvent"}
    row = {"TenantId": "redacted", "TimeGenerated": e["time"][:23] + "Z", "Computer": HOST, "EventSourceName": SECURITY,
           "Channel": "Security", "EventID": e["id"], "Activity": f'{e["id"]} - event', "Type": "SecurityEvent"}
    if e["id"] == 4688:
        row.update(e["data"])  # SecurityEvent has 4688's fields as columns
    else:
        row["EventData"] = "<EventData xmlns=\"http://schemas.microsoft.com/win/2004/08/events/event\">\r\n" + "".join(
            f'  <Data Name="{k}">{esc(v)}</Data>\r\n' for k, v in e["data"].items()) + "</EventData>"
    return row

def lines(objs):
    return "".join(json.dumps(o) + "\n" for o in objs)

open("scenario.xml", "w").write("<Events>\n" + "\n".join(xml_event(e) for e in EVENTS) + "\n</Events>\n")
open("scenario.evtx-dump.jsonl", "w").write(lines(dump_json(e) for e in EVENTS))
open("scenario.evtx-dump.json", "w").write("".join(f"Record {e['rid']}\n" + json.dumps(dump_json(e), indent=2) + "\n" for e in EVENTS))
open("scenario.winlogbeat.jsonl", "w").write(lines(winlogbeat(e) for e in EVENTS))
open("scenario.helk.jsonl", "w").write(lines(flat(e) for e in EVENTS))
open("scenario.sentinel.jsonl", "w").write(lines(sentinel(e) for e in EVENTS))
with gzip.GzipFile("scenario.winlogbeat.jsonl.gz", "wb", mtime=0) as f:
    f.write(lines(winlogbeat(e) for e in EVENTS).encode())
buf = io.BytesIO()
with zipfile.ZipFile("scenario.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for name in ("scenario.xml", "scenario.helk.jsonl"):
        info = zipfile.ZipInfo(name, date_time=(2024, 4, 29, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, open(name).read())
# Lineage across files, in the "wrong" order: the child first, its parent's creation second.
open("lineage-child.xml", "w").write("<Events>\n" + xml_event(EVENTS[7]) + "\n</Events>\n")
open("lineage-parents.xml", "w").write("<Events>\n" + "\n".join(xml_event(e) for e in (EVENTS[0], EVENTS[4])) + "\n</Events>\n")
