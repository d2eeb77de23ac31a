"""The consent trail (pure, no I/O): what an entry and a checkpoint are, the export format,
and the offline verification an auditor runs without trusting the server.

- An entry is canonical JSON (RFC 8785) holding its sequence number and the leaf hash of the
  entry before it (`prev`): the entries form a hash chain.
- Entries are the leaves of an RFC 6962 Merkle tree; a checkpoint signs (Ed25519) the tree
  head (size and root) at a moment.
- No personal data: pseudonymous ids, organisations, purposes and categories only."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.consent import merkle
from services.runtime import sealing


def encode_entry(seq: int, prev: bytes | None, at: datetime, kind: str,
                 fields: Mapping[str, Any]) -> bytes:
    body = {"seq": seq, "prev": prev.hex() if prev else "", "at": at.isoformat(),
            "kind": kind, **fields}
    return rfc8785.dumps(body)


LOCKED = ("prev", "seq")
"""An entry's values only known under the trail's append lock, in their canonical order."""


def entry_parts(at: datetime, kind: str, fields: Mapping[str, Any]) -> tuple[bytes, bytes,
                                                                            bytes]:
    """`encode_entry`'s bytes around its `prev` and `seq` values, which the database puts in
    under the append lock (consent.trail_append): parts[0] + '"<prev hex>"' + parts[1] +
    '<seq>' + parts[2] is the entry. RFC 8785 writes an object's members sorted by the UTF-16
    code units of their keys, each value written as it would be alone."""
    body = {"at": at.isoformat(), "kind": kind, **fields}
    if any(key in body for key in LOCKED):
        raise ValueError(f"an entry's fields cannot hold {LOCKED}: {sorted(body)}")
    parts: list[bytes] = []
    current = bytearray(b"{")
    for i, key in enumerate(sorted([*body, *LOCKED], key=lambda k: k.encode("utf-16be"))):
        current += (b"," if i else b"") + rfc8785.dumps(key) + b":"
        if key in LOCKED:
            parts.append(bytes(current))
            current = bytearray()
        else:
            current += rfc8785.dumps(body[key])
    parts.append(bytes(current + b"}"))
    first, middle, last = parts
    return first, middle, last


def checkpoint_payload(size: int, root: bytes, signed_at: str, kid: str) -> bytes:
    return rfc8785.dumps({"size": size, "root": root.hex(), "signed_at": signed_at,
                          "kid": kid})


def sign_checkpoint(key: Ed25519PrivateKey, size: int, root: bytes, signed_at: str,
                    kid: str) -> bytes:
    return key.sign(checkpoint_payload(size, root, signed_at, kid))


def public_jwk(kid: str, key: Ed25519PublicKey) -> dict[str, str]:
    raw = key.public_bytes_raw()
    return {"kid": kid, "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "Ed25519",
            "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


def public_key_of(jwk: Mapping[str, str]) -> Ed25519PublicKey:
    x = jwk["x"]
    return Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))


# --- export ----------------------------------------------------------------------------------

def entry_line(entry: bytes) -> str:
    return json.dumps({"type": "entry", "entry": entry.decode()}, ensure_ascii=False)


def checkpoint_line(size: int, root: bytes, signed_at: str, kid: str, signature: bytes) -> str:
    return json.dumps({"type": "checkpoint", "size": size, "root": root.hex(),
                       "signed_at": signed_at, "kid": kid,
                       "signature": base64.b64encode(signature).decode()})


def keys_line(keys: Iterable[Mapping[str, str]]) -> str:
    return json.dumps({"type": "keys", "keys": list(keys)})


# --- verification ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Report:
    entries: int
    checkpoints: int
    root: str | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


class _Bad(Exception):
    pass


# Reading: every line, and every entry, is read by orjson first, and its result is taken only
# where it is the one `json.loads` gives: orjson reads a subset of what `json` reads (no NaN or
# Infinity, no lone surrogate, no nesting past 1,024) and reads it as the same values, except
# integers past 64 bits, which it turns into floats. So an entry line is taken when its `type`
# and `entry` are strings, an entry when its `seq` is an int (`prev` is only compared with a
# string); anything else (an error, keys, a checkpoint, an odd `seq`) is read again by `json`,
# whose result or exception, and so the report, is the one it has always been
# (tests/unit/test_trail_verify.py).

def verify(lines: Iterable[str], trusted: Mapping[str, Ed25519PublicKey] | None = None) -> Report:
    """Check every entry, chain link, tree head and signature of an export; the report names
    the first problem found. Keys come from `trusted` (the auditor's own copy) when given,
    else from the export itself: then the signatures only show the export is consistent, not
    who signed it (whoever rewrote it could sign it again with keys of their own)."""
    tree = merkle.Frontier()
    keys: dict[str, Ed25519PublicKey] = dict(trusted or {})
    checkpoints, last_root, last_size = 0, None, 0
    try:
        number = 0
        for line in lines:
            if not line.strip():
                continue
            number += 1
            try:
                item = orjson.loads(line)
            except ValueError:
                item = None
            if (type(item) is not dict or item.get("type") != "entry"
                    or type(item.get("entry")) is not str):
                item = json.loads(line)  # see "Reading" above
            kind = item.get("type")
            if kind == "keys" and trusted is None:
                keys |= {k["kid"]: public_key_of(k) for k in item["keys"]}
            elif kind == "entry":
                _check_entry(number, item["entry"], tree)
            elif kind == "checkpoint":
                _check_checkpoint(number, item, tree, keys, last_size)
                checkpoints, last_size = checkpoints + 1, item["size"]
                last_root = item["root"]
        if last_size != tree.size:
            raise _Bad(f"entries {last_size}..{tree.size - 1} are not covered by a signed "
                       "checkpoint")
    except _Bad as bad:
        return Report(tree.size, checkpoints, last_root, str(bad))
    except (ValueError, KeyError, TypeError) as exc:
        return Report(tree.size, checkpoints, last_root, f"unreadable export: {exc!r}")
    return Report(tree.size, checkpoints, last_root)


def _check_entry(number: int, text: str, tree: merkle.Frontier) -> None:
    seq = tree.size
    try:
        body = orjson.loads(text)
    except ValueError:
        body = None
    if type(body) is not dict or type(body.get("seq")) is not int:
        body = json.loads(text)  # see "Reading" above
    if body.get("seq") != seq:
        found = body.get("seq")
        raise _Bad(f"line {number}: entry {seq} is missing (found entry {found} instead)")
    if body.get("prev") != tree.last:
        raise _Bad(f"line {number}: entry {seq - 1} was altered (entry {seq} no longer "
                   "follows it)")
    tree.append(merkle.leaf_hash(text.encode()))


def _check_checkpoint(number: int, item: Mapping[str, Any], tree: merkle.Frontier,
                      keys: Mapping[str, Ed25519PublicKey], last_size: int) -> None:
    size, kid = item["size"], item["kid"]
    if size < last_size:
        raise _Bad(f"line {number}: checkpoint of size {size} after one of size {last_size}")
    if size != tree.size:
        raise _Bad(f"line {number}: checkpoint of size {size} but {tree.size} entries before "
                   "it: entries were removed or added")
    if kid not in keys:
        raise _Bad(f"line {number}: checkpoint signed by unknown key {kid}")
    if not signature_holds(item, keys):
        raise _Bad(f"line {number}: the signature of checkpoint {size} is not valid")
    root = bytes.fromhex(item["root"])
    if tree.root() != root:
        # every chain link up to here held, so only the last entry can differ alone
        raise _Bad(f"line {number}: entry {size - 1} was altered (checkpoint {size} no longer "
                   f"matches; or entries {last_size}..{size - 1} were rewritten together)")


# --- checks of single items, as an auditor runs them on what the API gives ------------------

def signature_holds(head: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> bool:
    """A signed tree head (an export's checkpoint line, or a checkpoint of the API: size,
    root in hex, signed_at, kid, signature in base64) is signed by one of `keys`."""
    key = keys.get(head["kid"])
    if key is None:
        return False
    try:
        key.verify(base64.b64decode(head["signature"]), checkpoint_payload(
            head["size"], bytes.fromhex(head["root"]), head["signed_at"], head["kid"]))
    except (InvalidSignature, ValueError):
        return False
    return True


def proof_holds(item: Mapping[str, Any], head: Mapping[str, Any]) -> bool | None:
    """One entry of a person's extract (`/v1/audit/consent-trail`: seq, entry,
    inclusion_proof) is in the tree whose signed head is `head`: its leaf hash, made again
    from the entry itself (never the one the server gives), and its audit path lead to the
    head's root. None: the entry is newer than the head, so there is no proof yet."""
    seq, proof = item.get("seq"), item.get("inclusion_proof")
    if not isinstance(seq, int) or not isinstance(item.get("entry"), Mapping):
        return False
    if proof is None:
        return None if seq >= head["size"] else False
    try:
        leaf = merkle.leaf_hash(rfc8785.dumps(item["entry"]))
        return merkle.verify_inclusion(seq, head["size"], leaf,
                                       [bytes.fromhex(p) for p in proof],
                                       bytes.fromhex(head["root"]))
    except (ValueError, TypeError, rfc8785.CanonicalizationError):
        return False


def consistent(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """The tree of head `new` extends the tree of head `old` (append only): `new`'s
    consistency proof from `old`, as `/v1/audit/checkpoints` gives it."""
    proof = new.get("consistency_proof")
    if new.get("consistency_from") != old["size"] or proof is None:
        return False
    try:
        return merkle.verify_consistency(old["size"], new["size"], bytes.fromhex(old["root"]),
                                         bytes.fromhex(new["root"]),
                                         [bytes.fromhex(p) for p in proof])
    except ValueError:
        return False


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


KEY_CONTEXT = "consent/audit-key/{}"


def seal_key(master: sealing.Keyring, kid: str, key: Ed25519PrivateKey) -> bytes:
    """The private key sealed under the master key, to be stored."""
    return master.seal(key.private_bytes_raw(), KEY_CONTEXT.format(kid))


def open_key(master: sealing.Keyring, kid: str, sealed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        master.open(sealed, KEY_CONTEXT.format(kid)))
