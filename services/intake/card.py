"""The person's card (issue #11, point 3): a short personal code, given at a contact, that
the person shows at a later one so that the counsellor attaches it to the same person without
asking for papers. No I/O.

The code is made as the receipt's (services/runtime/codes.py: CODE_LENGTH signs without the
ones that read alike, in groups) and kept only as its HMAC under a key derived from the master
key with its own HKDF info (CARD_CONTEXT): a copy of the database alone gives no code away.
The card carries the code and the names of Relais and of the team, nothing about the person.

A code opens its person to an organisation that met them only (services/runtime/access.py:
"met"); to any other, it is the same refusal as an unknown code, and it counts as a failure
for the throttle. A new card for the same person replaces the earlier ones: the usual reason
is a lost card, and a lost card must not let whoever finds it pass for the person."""

from __future__ import annotations

from services.runtime import codes
from services.runtime.sealing import Keyring, derived

CARD_CONTEXT = derived("relais-person-card-v1")


def key(master: Keyring) -> bytes:
    """The cards' own key, derived from the master key (so it changes with it)."""
    return codes.derive(master, CARD_CONTEXT)


def code_hash(card_key: bytes, code: str) -> bytes:
    """What is kept of a card's code."""
    return codes.keyed_hash(card_key, "card", code)
