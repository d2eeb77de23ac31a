"""`trail.verify` reads the export with orjson where it reads the same as `json`: every report,
on honest and on altered exports, is the one the plain `json` verification gives (kept here
as `reference`), down to the message of an unreadable export."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.consent import merkle, trail

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KID = "test"
AT = datetime(2026, 12, 6, tzinfo=UTC)


def reference(lines: Iterable[str],
              trusted: Mapping[str, Ed25519PublicKey] | None = None) -> trail.Report:
    """The verification as it was before orjson: every line and every entry by json.loads."""
    tree = merkle.Frontier()
    keys: dict[str, Ed25519PublicKey] = dict(trusted or {})
    checkpoints, last_root, last_size = 0, None, 0
    try:
        for number, line in enumerate((x for x in lines if x.strip()), start=1):
            item = json.loads(line)
            kind = item.get("type")
            if kind == "keys" and trusted is None:
                keys |= {k["kid"]: trail.public_key_of(k) for k in item["keys"]}
            elif kind == "entry":
                seq, text = tree.size, item["entry"]
                body = json.loads(text)
                if body.get("seq") != seq:
                    found = body.get("seq")
                    raise trail._Bad(f"line {number}: entry {seq} is missing (found entry "
                                     f"{found} instead)")
                if body.get("prev") != tree.last:
                    raise trail._Bad(f"line {number}: entry {seq - 1} was altered (entry {seq} "
                                     "no longer follows it)")
                tree.append(merkle.leaf_hash(text.encode()))
            elif kind == "checkpoint":
                trail._check_checkpoint(number, item, tree, keys, last_size)
                checkpoints, last_size = checkpoints + 1, item["size"]
                last_root = item["root"]
        if last_size != tree.size:
            raise trail._Bad(f"entries {last_size}..{tree.size - 1} are not covered by a "
                             "signed checkpoint")
    except trail._Bad as bad:
        return trail.Report(tree.size, checkpoints, last_root, str(bad))
    except (ValueError, KeyError, TypeError) as exc:
        return trail.Report(tree.size, checkpoints, last_root, f"unreadable export: {exc!r}")
    return trail.Report(tree.size, checkpoints, last_root)


Text = Callable[[dict[str, Any]], str]


def canonical(body: dict[str, Any]) -> str:
    return rfc8785.dumps(body).decode()


def export(n: int = 6, every: int = 4, text: Text = canonical,
           change: Mapping[int, Callable[[str], str]] | None = None) -> list[str]:
    """An export of n entries, each written by `text` (then changed by `change[seq]`, if
    any) and chained on what was written: only what `change` does is wrong."""
    lines = [trail.keys_line([trail.public_jwk(KID, KEY.public_key())])]
    tree, prev = merkle.Frontier(), None
    for seq in range(n):
        body = {"seq": seq, "prev": prev.hex() if prev else "", "at": AT.isoformat(),
                "kind": "consent.granted", "person_id": f"p-{seq}", "org": "equipe",
                "purposes": ["referral_partner"], "notice_version": "2026-01"}
        entry = text(body)
        if change and seq in change:
            entry = change[seq](entry)
        prev = merkle.leaf_hash(entry.encode("utf-8", "surrogatepass"))
        tree.append(prev)
        lines.append(json.dumps({"type": "entry", "entry": entry}, ensure_ascii=False))
        if tree.size % every == 0 or tree.size == n:
            root = tree.root()
            lines.append(trail.checkpoint_line(tree.size, root, AT.isoformat(), KID,
                                               trail.sign_checkpoint(KEY, tree.size, root,
                                                                     AT.isoformat(), KID)))
    return [line + "\n" for line in lines]


def entry_text(lines: list[str], seq: int) -> tuple[int, str]:
    entries = [n for n, line in enumerate(lines) if json.loads(line)["type"] == "entry"]
    return entries[seq], json.loads(lines[entries[seq]])["entry"]


def same(lines: list[str]) -> trail.Report:
    report = trail.verify(lines)
    assert report == reference(lines)
    trusted = {KID: KEY.public_key()}
    assert trail.verify(lines, trusted) == reference(lines, trusted)
    return report


def test_an_honest_export_verifies() -> None:
    report = same(export())
    assert report.ok and report.entries == 6 and report.checkpoints == 2


def test_a_changed_seq_is_named() -> None:
    lines = export()
    n, text = entry_text(lines, 3)
    lines[n] = trail.entry_line(rfc8785.dumps(json.loads(text) | {"seq": 4})) + "\n"
    assert same(lines).problem == "line 5: entry 3 is missing (found entry 4 instead)"


def test_a_changed_prev_is_named() -> None:
    lines = export()
    n, text = entry_text(lines, 3)
    lines[n] = trail.entry_line(rfc8785.dumps(json.loads(text) | {"prev": "00" * 32})) + "\n"
    assert same(lines).problem == "line 5: entry 2 was altered (entry 3 no longer follows it)"


@pytest.mark.parametrize("text", [
    lambda b: json.dumps(b),  # spaces after ':' and ','
    lambda b: json.dumps(dict(reversed(b.items())), indent=1),  # seq last, new lines
    lambda b: " \t" + json.dumps(b, separators=(",", ":"), ensure_ascii=True) + "\r\n ",
    lambda b: json.dumps(b).replace('"seq"', '"\\u0073eq"').replace('"prev"', '"pr\\u0065v"'),
], ids=["spaces", "reordered", "padded", "escaped-keys"])
def test_entries_not_in_canonical_form_read_as_json_reads_them(text: Text) -> None:
    assert same(export(text=text)).ok
    lines = export(text=text)
    n, entry = entry_text(lines, 2)
    lines[n] = trail.entry_line(entry.replace('"org"', ' "org"').encode()) + "\n"
    assert same(lines).problem == "line 5: entry 2 was altered (entry 3 no longer follows it)"


def test_a_duplicate_key_counts_as_json_counts_it() -> None:
    lines = export(change={2: lambda t: t[:-1] + ',"seq":7}'})
    assert same(lines).problem == "line 4: entry 2 is missing (found entry 7 instead)"
    assert same(export(change={2: lambda t: '{"seq":9,' + t[1:]})).ok  # the last one holds


@pytest.mark.parametrize("change", [
    lambda t: t[:-1] + ",}",  # a trailing comma
    lambda t: t + "x",  # more after the object
    lambda t: t[:-1],  # cut short
    lambda t: t.replace("equipe", "equ\tipe"),  # a control character in a string
    lambda t: t.replace('"org"', "'org'"),
    lambda t: "\ufeff" + t,
    lambda t: t.replace("referral_partner", "\\x"),
    lambda t: t.replace('"prev"', '"prev" "x":1, "prev"'),
], ids=["comma", "extra", "cut", "control", "quotes", "bom", "escape", "missing-colon"])
def test_an_entry_json_refuses_is_refused_with_json_s_words(change: Callable[[str], str]) -> None:
    """seq and prev right, the chain re-made on the bad text: only the parse can tell."""
    report = same(export(change={2: change}))
    assert report.problem is not None
    assert report.problem.startswith("unreadable export: JSONDecodeError("), report.problem
    assert report.entries == 2


@pytest.mark.parametrize(("seq", "found"), [
    ("18446744073709551616", "18446744073709551616"),  # past 64 bits: orjson makes a float
    ("-9223372036854775809", "-9223372036854775809"),
    ("1" * 40, "1" * 40),
    ("NaN", "nan"), ("Infinity", "inf"), ("1e400", "inf"),  # orjson refuses these
    ("2.0", "2.0"), ("true", "True"), ('"2"', "2"), ("null", "None"),
])
def test_an_odd_seq_is_named_as_json_reads_it(seq: str, found: str) -> None:
    lines = export(change={2: lambda t: t.replace('"seq":2', f'"seq":{seq}')})
    problem = same(lines).problem
    if seq == "2.0":  # 2.0 == 2: the entry counts, its text is what the next one follows
        assert problem is None
    else:
        assert problem == f"line 4: entry 2 is missing (found entry {found} instead)"


def test_what_json_reads_and_orjson_does_not_still_verifies() -> None:
    for change in (lambda t: t[:-1] + ',"z":NaN}',
                   lambda t: t[:-1] + ',"z":123456789012345678901234567890}'):
        assert same(export(change={2: change})).ok


def test_a_lone_surrogate_is_read_as_json_reads_it() -> None:
    """json reads "\\ud800" (orjson does not); the entry text then cannot be hashed."""
    lines = export(change={2: lambda t: t.replace("equipe", "\\ud800")})
    assert same(lines).ok
    report = same(export(change={2: lambda t: t.replace("equipe", "\ud800")}))
    assert report.problem is not None and report.entries == 2
    assert report.problem.startswith("unreadable export: UnicodeEncodeError('utf-8', ")


@pytest.mark.parametrize("line", [
    '{"type": "entry", "entry": 18446744073709551616}',  # not text: json names its type
    '{"type": "entry", "entry": ["x"]}',
    '{"type": "entry", "entry": "{}", "entry": "{\\"seq\\":9}"}',
    '{"type": "entry", "entry": "{\\"seq\\":\\"\\ud800\\"}"}',
    '{"type": "entry", "entry": "{\\"seq\\":3}", "x": NaN}',
    '{"type": "entry"}',
    '{"type": "checkpoint", "size": 18446744073709551616, "root": "", "kid": "x"}',
    '{"type": "checkpoint", "size": 4, "root": 18446744073709551616, "kid": "x"}',
    '{"type": "keys", "keys": [{"kid": "x", "x": 18446744073709551616}]}',
    '{"type": "note", "x": 1e400}',
    '{"type": "entry", "entry": "{}"',
    '\ufeff{"type": "note"}',
    '{"type": "note"} x',
])
def test_odd_lines_give_the_report_json_gives(line: str) -> None:
    lines = export()
    for at in (1, 5, len(lines)):
        changed = [*lines[:at], line + "\n", *lines[at:]]
        report = same(changed)
        if at == 1 and '"entry"' in line:
            assert not report.ok


def test_blank_lines_are_not_counted() -> None:
    lines = export()
    n, text = entry_text(lines, 3)
    lines[n] = trail.entry_line(rfc8785.dumps(json.loads(text) | {"seq": 4})) + "\n"
    padded = ["\n", "  \n", *lines[:3], "\u2028\n", "\t\r\n", *lines[3:]]
    assert same(padded).problem == "line 5: entry 3 is missing (found entry 4 instead)"
