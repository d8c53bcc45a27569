#!/usr/bin/env python3
"""Seeds the fuzz corpora from tests/data and ../shared/data: `seed.py OUT RULE.wasm`.

Writes OUT/seeds/<target>/ for every target, and OUT/keys/ (a key pair made for the run,
the rule signed with it) for the artifact target. Large text files are cut into pieces of
whole lines, so that the fuzzer mutates inputs of a size it can explore.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests" / "data"
SHARED = ROOT.parent / "shared" / "data"
PIECE_BYTES = 8 << 10
PIECES_PER_FILE = 40


def files(*patterns):
    found = []
    for base, pattern in patterns:
        found.extend(sorted(base.glob(pattern)))
    return [f for f in found if f.is_file()]


def pieces(data: bytes):
    """Whole lines, up to PIECE_BYTES at a time, at most PIECES_PER_FILE pieces."""
    out, piece = [], b""
    for line in data.splitlines(keepends=True):
        if piece and len(piece) + len(line) > PIECE_BYTES:
            out.append(piece)
            piece = b""
        piece += line
        if len(out) >= PIECES_PER_FILE:
            break
    if piece and len(out) < PIECES_PER_FILE:
        out.append(piece)
    return out


def write(directory: Path, data: bytes):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    out, rule = Path(sys.argv[1]), Path(sys.argv[2])
    seeds = out / "seeds"
    if seeds.exists():
        shutil.rmtree(seeds)
    jsonl = files((TESTS, "*.jsonl"), (TESTS, "windows/*.jsonl"))
    text = {
        "json_lines": jsonl + files((SHARED, "evtx/*.json")),
        "json_documents": files((TESTS, "*.json"), (TESTS, "windows/*.json"), (SHARED, "evtx/*.json")),
        "csv": files((TESTS, "*.csv")),
        "evtx_xml": files((TESTS, "windows/*.xml")),
        "dismissal": files((TESTS, "windows/scenario.evtx-dump.jsonl"), (SHARED, "evtx/*.json")),
        "sigma_rule": files((SHARED, "sigma/*.yml"), (TESTS, "sigma-modifiers/*.yml"))
        + files((SHARED, "sigma-catalog/rules/windows/process_creation/*.yml"))[:300],
    }
    for target, sources in text.items():
        for source in sources:
            data = source.read_bytes()
            if target == "dismissal":
                for line in data.splitlines()[:200]:
                    write(seeds / target, line)
            elif target in ("json_documents", "sigma_rule", "evtx_xml"):
                write(seeds / target, data)
            else:
                for piece in pieces(data):
                    write(seeds / target, piece)
    # Anchors and aliases, which repeat nodes: a rule sharing values through one, and three
    # levels of aliases of aliases (YAML's expansion bombs, bounded by the loader).
    header = "title: t\nid: 0f7a7c9e-0000-4000-8000-000000000001\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n"
    write(
        seeds / "sigma_rule",
        (header + "  a:\n    CommandLine|contains: &v [whoami, ipconfig]\n  b:\n    ParentCommandLine|contains: *v\n  condition: a or b\n").encode(),
    )
    laughs = header + "  l0: &l0 [x, x, x]\n  l1: &l1 [*l0, *l0, *l0]\n  l2: &l2 [*l1, *l1, *l1]\n"
    write(seeds / "sigma_rule", (laughs + "  a:\n    CommandLine|contains: *l2\n  condition: a\n").encode())
    for source in files((SHARED, "evtx/*.evtx")):
        write(seeds / "evtx_binary", source.read_bytes())
    # Containers: the fixtures, the smallest real capture, and small ones made here.
    for source in files((TESTS, "windows/*.gz"), (TESTS, "windows/*.zip"), (SHARED, "otrf/securityauditing_*.zip")):
        write(seeds / "containers", source.read_bytes())
    sample = (TESTS / "defender-rows.jsonl").read_bytes()
    write(seeds / "containers", gzip.compress(sample))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("rows.jsonl", sample)
        archive.writestr("events.xml", (TESTS / "windows/lineage-child.xml").read_bytes())
    write(seeds / "containers", buffer.getvalue())
    # Trust policies: the README's shapes, and some that must be refused.
    for policy in [
        'keys = { fuzz = "fuzz.pub" }\n',
        '[keys]\nfuzz = "fuzz.pub"\n[require]\nall_of = ["fuzz"]\n',
        '[keys]\nfuzz = "fuzz.pub"\nother = "fuzz.pub"\n[require]\nany_of = ["fuzz", "other"]\nminimum = 2\n',
        '[keys]\nfuzz = "fuzz.pub"\n[require]\nany_of = ["nobody"]\n',
        '[keys]\n[require]\nminimum = 3\n',
    ]:
        write(seeds / "trust_policy", policy.encode())
    # The artifact target: a key made for this run and the rule signed with it.
    keys = out / "keys"
    if keys.exists():
        shutil.rmtree(keys)
    keys.mkdir(parents=True)
    rulehost = str(ROOT / "target" / "release" / "rulehost")
    subprocess.run([rulehost, "key", "generate", "--name", "fuzz", "--dir", str(keys)], check=True, capture_output=True)
    subprocess.run(
        [rulehost, "sign", "--key", str(keys / "fuzz.key"), str(rule), "-o", str(keys / "signed.wasm")],
        check=True,
        capture_output=True,
    )
    os.remove(keys / "fuzz.key")
    write(seeds / "artifact", (keys / "signed.wasm").read_bytes())
    write(seeds / "artifact", rule.read_bytes())
    # alert_fit: two bytes of bound, then alerts and matches as the sinks write them.
    for golden in files((ROOT / "tests" / "golden", "*.alerts.jsonl"), (ROOT / "tests" / "golden", "*.matches.jsonl")):
        for line in golden.read_bytes().splitlines()[:5]:
            for bound in (b"\x00\x00", b"\x20\x00", b"\xff\x01"):
                write(seeds / "alert_fit", bound + line)
    forged = "whoami …[" + "9" * 5000 + " bytes, sha256:0123456789abcdef]"
    write(seeds / "alert_fit", b"\x10\x00" + json.dumps({"rule": "r", "event": {"ProcessCommandLine": forged}}).encode())
    for target in sorted(p.name for p in seeds.iterdir()):
        print(f"{target}: {len(list((seeds / target).iterdir()))} seeds")


if __name__ == "__main__":
    main()
