#!/usr/bin/env python3
"""pySigma's side of the differential test of rulehost's Sigma packs (tests/all/sigma_differential.rs).

    differential.py generate CATALOG OUT     events made from every rule's detection items
    differential.py evaluate CATALOG EVENTS OUT
                                             pySigma's verdict (its SQLite backend over the
                                             same events) for every rule on its events
    differential.py evaluate-all CATALOG EVENTS OUT
                                             the same, every rule on every event (real
                                             records, whatever rule they came for)
    differential.py load RULES OUT           whether pySigma reads each rule file of the
                                             folder RULES (sorted), and its error if not

`generate` writes one JSON line per event, `{"group": N, "fields": {SigmaField: value}}`, where
N is the rule's index in the sorted catalog. The events come from pySigma's own reading of the
rule (values after its modifiers: windash and base64offset expansions, wildcards, escapes):
each detection item's values filled in, in other cases, with characters before and after, cut
short, with a character changed, and the field missing or empty, inside events that satisfy
the rest of the rule's search, so that a change of one value changes the verdict.

The Rust side reads these events as Sysmon records, renders every Sigma field back from the
normalized event (so both sides see the same values), and `evaluate` runs each rule's SQL
query over the events of its own group and of the next groups (`{"id", "group", "fields"}`).
It writes one line per rule: `{"file", "id", "groups", "matched": [event ids]}`, or an
`error` when pySigma cannot convert the rule.

Where the SQLite backend departs from Sigma's semantics, the database is given the meaning
the specification states, and each departure is named here:
- SQLite's LIKE and NOCASE fold ASCII only; Sigma values are case-insensitive in Unicode
  (the specification), so LIKE and the column collation fold every character.
- REGEXP is not built into SQLite; it is Python's `re.search` (a search, not anchored).
- The event model has no null: an absent field and an empty one are the same, so `null` and
  `exists` are read over "absent or empty".
"""

import base64
import functools
import json
import random
import re
import sqlite3
import sys
from pathlib import Path

try:
    import re._parser as sre_parse  # Python 3.11+
except ImportError:  # pragma: no cover
    import sre_parse

from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from sigma.conditions import ConditionAND
from sigma.rule import SigmaDetection, SigmaDetectionItem
from sigma.types import (
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

# The Sigma fields of process creation that rulehost reads (rules-wasm/sigma/src/ir.rs).
FIELDS = [
    "CommandLine", "Image", "OriginalFileName", "ParentImage", "ParentCommandLine",
    "Description", "Product", "Company", "FileVersion", "CurrentDirectory", "IntegrityLevel",
    "User", "ParentUser", "LogonId", "Hashes", "Imphash", "md5", "sha1", "sha256",
    "ProcessId", "ParentProcessId", "GrandParentImage", "Computer",
]
# The fields a keyword (a value without a field) is searched in, as rulehost does.
KEYWORD_FIELDS = [
    "CommandLine", "Image", "ParentCommandLine", "ParentImage", "OriginalFileName",
    "Description", "Product", "Company", "CurrentDirectory", "User", "Hashes",
]
FULLTEXT = "fulltext"
# Events per rule at most (a rule with many values is sampled, with a fixed seed).
MAX_EVENTS_PER_RULE = 240
# Each rule is also evaluated on the events of this many following rules.
NEIGHBOURS = 2


def catalog_files(catalog):
    return sorted(Path(catalog).rglob("*.yml"))


def load_rule(path):
    return SigmaCollection.from_yaml(path.read_text(encoding="utf-8")).rules[0]


# ---------------------------------------------------------------- generation


def fill(s, multi="", single="a"):
    """A SigmaString with its wildcards replaced."""
    out = []
    for part in s.s:
        if part == SpecialChars.WILDCARD_MULTI:
            out.append(multi)
        elif part == SpecialChars.WILDCARD_SINGLE:
            out.append(single)
        elif isinstance(part, str):
            out.append(part)
    return "".join(out)


def regex_examples(pattern, limit=3):
    """Strings that a regular expression matches, walked from its parse tree: the first
    alternative everywhere, then the second, and so on."""
    try:
        tree = sre_parse.parse(pattern)
    except Exception:
        return []

    def gen(items, pick):
        out = []
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(arg))
            elif name == "NOT_LITERAL":
                out.append("q" if chr(arg) != "q" else "z")
            elif name == "ANY":
                out.append("k")
            elif name == "IN":
                out.append(in_char(arg, pick))
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, high, sub = arg
                count = low if low > 0 else (1 if pick % 2 == 0 and high != 0 else 0)
                out.append("".join(gen(sub, pick) for _ in range(count)))
            elif name == "SUBPATTERN":
                out.append(gen(arg[-1], pick))
            elif name == "ATOMIC_GROUP":
                out.append(gen(arg, pick))
            elif name == "BRANCH":
                branches = arg[1]
                out.append(gen(branches[pick % len(branches)], pick))
            elif name == "AT":
                pass
            elif name == "CATEGORY":
                out.append(category_char(str(arg)))
            else:
                raise ValueError(name)
        return "".join(out)

    def in_char(items, pick):
        negate = any(str(op) == "NEGATE" for op, _ in items)
        if negate:
            for c in "qZ7 _.é":
                if not re.fullmatch(pattern_of_set(items), c):
                    return c
            return "q"
        choices = []
        for op, arg in items:
            if str(op) == "LITERAL":
                choices.append(chr(arg))
            elif str(op) == "RANGE":
                choices.append(chr(arg[0]))
            elif str(op) == "CATEGORY":
                choices.append(category_char(str(arg)))
        return choices[pick % len(choices)] if choices else "a"

    def pattern_of_set(items):
        # A Python class equivalent to the parsed set, to pick a character outside it.
        return "[" + sre_unparse_set(items) + "]"

    examples = []
    for pick in range(limit):
        try:
            text = gen(tree, pick)
        except Exception:
            break
        if text not in examples:
            examples.append(text)
    return examples


def sre_unparse_set(items):
    out = []
    for op, arg in items:
        name = str(op)
        if name == "NEGATE":
            out.insert(0, "^")
        elif name == "LITERAL":
            out.append(re.escape(chr(arg)))
        elif name == "RANGE":
            out.append(re.escape(chr(arg[0])) + "-" + re.escape(chr(arg[1])))
        elif name == "CATEGORY":
            out.append({
                "CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_SPACE": r"\s",
                "CATEGORY_NOT_SPACE": r"\S", "CATEGORY_WORD": r"\w", "CATEGORY_NOT_WORD": r"\W",
            }.get(str(arg), ""))
    return "".join(out)


def category_char(name):
    return {
        "CATEGORY_DIGIT": "7", "CATEGORY_NOT_DIGIT": "x", "CATEGORY_SPACE": " ",
        "CATEGORY_NOT_SPACE": "x", "CATEGORY_WORD": "w", "CATEGORY_NOT_WORD": "-",
    }.get(name, "a")


def mutations(text):
    """Near misses and near hits of one value."""
    out = [text, text.upper(), text.lower(), text.swapcase(), text.title()]
    out += ["x" + text, text + "x", "\\" + text + "\\", " " + text + " ", "ÄÖ" + text + "é"]
    if len(text) > 1:
        middle = len(text) // 2
        out += [text[1:], text[:-1], text[:middle] + text[middle + 1 :]]
        changed = "Q" if text[middle] != "Q" else "R"
        out.append(text[:middle] + changed + text[middle + 1 :])
    out.append("")
    return out


def kind_of(value):
    """Where a value's text goes when several items of one search name the same field: a
    prefix (startswith), a suffix (endswith), the middle (contains, regex) or the whole."""
    if isinstance(value, SigmaExpansion):
        return kind_of(value.values[0]) if value.values else "middle"
    if isinstance(value, SigmaString):
        starts = value.startswith(SpecialChars.WILDCARD_MULTI)
        ends = value.endswith(SpecialChars.WILDCARD_MULTI)
        return {(True, True): "middle", (False, True): "prefix", (True, False): "suffix"}.get(
            (starts, ends), "whole"
        )
    return "middle"


def value_strings(value, base=False):
    """Strings made from one value of a detection item (after pySigma's modifiers). With
    `base`, only the one most likely to match."""
    if isinstance(value, SigmaExpansion):
        out = []
        for sub in value.values:
            out += value_strings(sub, base)
            if base:
                break
        return out
    if isinstance(value, SigmaString):
        filled = fill(value)
        if base:
            return [filled]
        out = mutations(filled)
        out += [fill(value, "Zq", "é"), fill(value, "\\*", "?"), fill(value, "", "")]
        out += [fill(value, "", "ab")]
        return out
    if isinstance(value, SigmaRegularExpression):
        examples = regex_examples(str(value.regexp))
        if base:
            return examples[:1]
        out = []
        for example in examples:
            out += mutations(example)
        return out
    if isinstance(value, SigmaNull):
        return [""] if base else ["", "something"]
    return [] if base else [str(value)]


# An assignment is {field: [(item number, kind, text)]}: the pieces the items of a search put
# into each field, rendered prefix first, suffix last.


def item_assignments(key, item, base=False):
    """Assignments from one detection item; an `all` item's base puts every value in one
    string."""
    field = item.field or "CommandLine"
    if item.field is not None and item.field not in FIELDS:
        return []
    refs = [v for v in item.value if isinstance(v, SigmaFieldReference)]
    if refs:
        other = refs[0].field
        pairs = [("Same-Value", "Same-Value"), ("Same-Value", "same-value"),
                 ("Same-Value", "Other"), ("", "")]
        return [
            {field: [(key, "whole", a)], other: [(key, "whole", b)]}
            for a, b in (pairs[:1] if base else pairs)
        ]
    kind = kind_of(item.value[0]) if item.value else "whole"
    firsts = [(value_strings(v, True)[:1] or [""])[0] for v in item.value]
    if item.value_linking is ConditionAND:
        joined = [" ".join(firsts)]
        if base:
            return [{field: [(key, "middle", joined[0])]}]
    out = []
    for value in item.value:
        for text in value_strings(value, base):
            out.append({field: [(key, kind_of(value), text)]})
        if base and out:
            return out[:1]
    if item.value_linking is ConditionAND:
        for text in (" ".join(firsts), " ".join(reversed(firsts)), " ".join(firsts[:-1])):
            out.append({field: [(key, "middle", text)]})
    if item.field is None:
        out += [{"Image": pieces} for d in out[:3] for pieces in d.values()]
    return out or ([] if base else [{field: [(key, kind, "")]}])


def merge(a, b):
    """`a` with the pieces of `b`; a piece of the same item is replaced."""
    out = {field: list(pieces) for field, pieces in a.items()}
    for field, pieces in b.items():
        keys = {p[0] for p in pieces}
        out[field] = [p for p in out.get(field, []) if p[0] not in keys] + list(pieces)
    return out


def render(assignment):
    order = {"prefix": 0, "whole": 1, "middle": 1, "suffix": 2}
    out = {}
    for field, pieces in assignment.items():
        if field in FIELDS:
            out[field] = "".join(p[2] for p in sorted(pieces, key=lambda p: order[p[1]]))
    return out


def satisfying(detection, keys):
    """Assignments that satisfy a detection (alternatives for an OR of maps)."""
    if isinstance(detection, SigmaDetectionItem):
        return item_assignments(keys[id(detection)], detection, True)[:1] or [{}]
    children = [satisfying(child, keys) for child in detection.detection_items]
    if detection.item_linking is ConditionAND:
        merged = {}
        for alternatives in children:
            merged = merge(merged, alternatives[0])
        return [merged]
    return [alt for alternatives in children for alt in alternatives][:6]


def all_items(detection):
    if isinstance(detection, SigmaDetectionItem):
        yield detection
    else:
        for child in detection.detection_items:
            yield from all_items(child)


def rule_events(rule, seed):
    detections = rule.detection.detections
    keys = {}
    for det in detections.values():
        for item in all_items(det):
            keys[id(item)] = len(keys)
    bases = {name: satisfying(det, keys) for name, det in detections.items()}
    merged_all, merged_selections = {}, {}
    for name, alternatives in bases.items():
        merged_all = merge(merged_all, alternatives[0])
        # Searches that do not start with "filter" are what a rule looks for; together they
        # make the event the filters are tried against.
        if not name.startswith("filter"):
            merged_selections = merge(merged_selections, alternatives[0])
    events = [{}, merged_all, merged_selections]
    for alternatives in bases.values():
        for alt in alternatives:
            events += [alt, merge(merged_selections, alt)]
    variants = []
    for name, det in detections.items():
        for item in all_items(det):
            for assignment in item_assignments(keys[id(item)], item):
                for base in (bases[name][0], merged_selections):
                    variants.append(merge(base, assignment))
    rng = random.Random(seed)
    if len(variants) > MAX_EVENTS_PER_RULE - len(events):
        variants = rng.sample(variants, MAX_EVENTS_PER_RULE - len(events))
    seen, out = set(), []
    for assignment in events + variants:
        event = render(assignment)
        key = json.dumps(event, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(event)
    return out


def generate(catalog, out_path):
    count = 0
    with open(out_path, "w", encoding="utf-8") as out:
        for group, path in enumerate(catalog_files(catalog)):
            try:
                rule = load_rule(path)
            except Exception as error:
                print(f"{path.name}: pySigma cannot read it: {error}", file=sys.stderr)
                continue
            for event in rule_events(rule, group):
                out.write(json.dumps({"group": group, "fields": event}, ensure_ascii=False) + "\n")
                count += 1
    print(f"generated {count} events", file=sys.stderr)


# ---------------------------------------------------------------- evaluation


def fold(text):
    """Every character lower-cased on its own, as Unicode case-insensitive matching does."""
    return "".join(c.lower() for c in text)


@functools.lru_cache(maxsize=100_000)
def like_regex(pattern, escape):
    out, chars, i = [], pattern, 0
    while i < len(chars):
        c = chars[i]
        if escape and c == escape and i + 1 < len(chars):
            out.append(re.escape(chars[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def like(pattern, value, escape=None):
    if pattern is None or value is None:
        return None
    return like_regex(fold(pattern), escape).fullmatch(fold(value)) is not None


@functools.lru_cache(maxsize=10_000)
def compiled_regex(pattern):
    return re.compile(pattern)


def regexp(pattern, value):
    if pattern is None or value is None:
        return None
    return compiled_regex(pattern).search(value) is not None


def unicode_nocase(a, b):
    a, b = fold(a), fold(b)
    return (a > b) - (a < b)


class Backend(sqliteBackend):
    # No null in the event model: absent and empty are one.
    field_null_expression = "({field} IS NULL OR {field} = '')"
    field_exists_expression = "({field} IS NOT NULL AND {field} != '')"
    field_not_exists_expression = "({field} IS NULL OR {field} = '')"


def connect(events):
    db = sqlite3.connect(":memory:")
    db.create_function("like", 2, like, deterministic=True)
    db.create_function("like", 3, like, deterministic=True)
    db.create_function("regexp", 2, regexp, deterministic=True)
    db.create_collation("unocase", unicode_nocase)
    columns = ", ".join(f'"{f}" TEXT COLLATE unocase' for f in FIELDS + [FULLTEXT])
    db.execute(f"CREATE TABLE logs (id INTEGER PRIMARY KEY, grp INTEGER, {columns})")
    db.execute("CREATE INDEX logs_grp ON logs (grp)")
    names = ", ".join(f'"{f}"' for f in FIELDS + [FULLTEXT])
    marks = ", ".join("?" for _ in FIELDS + [FULLTEXT])
    rows = []
    for event in events:
        fields = event["fields"]
        values = [fields.get(f, "") for f in FIELDS]
        values.append("\n".join(fields.get(f, "") for f in KEYWORD_FIELDS))
        rows.append([event["id"], event["group"], *values])
    db.executemany(f"INSERT INTO logs (id, grp, {names}) VALUES (?, ?, {marks})", rows)
    return db


def evaluate(catalog, events_path, out_path, every_event=False):
    events = [json.loads(line) for line in open(events_path, encoding="utf-8")]
    db = connect(events)
    groups = sorted({e["group"] for e in events})
    backend = Backend(fulltext_field=FULLTEXT)
    files = catalog_files(catalog)
    with open(out_path, "w", encoding="utf-8") as out:
        for group, path in enumerate(files):
            record = {"file": path.name}
            try:
                rule = load_rule(path)
                record["id"] = str(rule.id)
                queries = backend.convert_rule(rule)
                if len(queries) != 1:
                    raise ValueError(f"{len(queries)} queries")
                where = queries[0].split(" WHERE ", 1)[1]
            except Exception as error:
                record["error"] = f"{type(error).__name__}: {error}"
                out.write(json.dumps(record) + "\n")
                continue
            if every_event:
                mine = groups
            elif group in groups:
                mine = [groups[(groups.index(group) + k) % len(groups)] for k in range(NEIGHBOURS + 1)]
            else:
                mine = []
            record["groups"] = mine
            marks = ", ".join("?" for _ in mine)
            try:
                rows = db.execute(f"SELECT id FROM logs WHERE grp IN ({marks}) AND ({where})", mine)
                record["matched"] = sorted(row[0] for row in rows)
            except sqlite3.Error as error:
                record["error"] = f"SQLite: {error}: {where}"
            out.write(json.dumps(record) + "\n")


def load(folder, out_path):
    """One line per rule file: `{"file"}`, or `{"file", "error", "kind"}` with pySigma's message
    and the exception's class (a SigmaError's, or what PyYAML or Python raised)."""
    with open(out_path, "w", encoding="utf-8") as out:
        for path in sorted(Path(folder).glob("*.yml")):
            record = {"file": path.name}
            try:
                SigmaCollection.from_yaml(path.read_text(encoding="utf-8"))
            except Exception as error:
                record["error"] = str(error)
                record["kind"] = type(error).__name__
            out.write(json.dumps(record) + "\n")


def main(argv):
    if len(argv) == 4 and argv[1] == "generate":
        generate(argv[2], argv[3])
    elif len(argv) == 5 and argv[1] == "evaluate":
        evaluate(argv[2], argv[3], argv[4])
    elif len(argv) == 5 and argv[1] == "evaluate-all":
        evaluate(argv[2], argv[3], argv[4], every_event=True)
    elif len(argv) == 4 and argv[1] == "load":
        load(argv[2], argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
