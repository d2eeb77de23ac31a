"""The search by name (issue #11, point 3): a keyed blind index over the identity vault. No
I/O.

Names stay sealed in the vault; beside each person, the index keeps only HMAC-SHA-256 values
of their normalised name under a key derived from the master key with its own HKDF info
(NAME_INDEX_CONTEXT), as the cards' codes are kept (services/intake/card.py). A search
computes the same value for what the counsellor typed and looks it up by equality: the
database finds the matches with an index, and only they are unsealed. A copy of the database
alone tells no name, and nothing can be looked up without the master key.

Normalised (`normalise`): compatibility decomposition (NFKD), accents dropped, case folded,
the ligatures of French names spelt out (œ, æ), and every sign that is not a letter removed
(spaces, hyphens, apostrophes, dots): "Élodie-Anne D'Hôtel" and "elodie anne dhotel" are one.

Each person with a name gets a small fixed set of terms (`terms`): the first name alone, the
last name alone, and both in either order ("Léa Martin", "MARTIN Léa"). So a counsellor finds
a person by whichever they know or say first, while an index holds at most four values per
person and a search needs exactly one lookup. What is not indexed: parts of a name (a prefix,
"Mart"), misspellings, a first name of a compound one alone ("Jean" for "Jean-Pierre"):
the search is exact by design, so that the index cannot be scanned to list people by
fragments. The price of the first name alone (the form asks for it, often the only name a
person gives): equal first names have equal terms, so a copy of the database shows which
people share a name, never which name."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from services.runtime import codes
from services.runtime.sealing import Keyring, derived

NAME_INDEX_CONTEXT = derived("relais-name-index-v1")
MIN_LETTERS = 2
"""A shorter query is refused: "Li", "Ly" or "Bá" are names, a single letter is not."""
MAX_TYPED = 160
"""What a query may be at most, as typed."""
SPELT_OUT = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ð": "d",
                           "þ": "th", "ı": "i"})
"""Letters NFKD leaves whole, as a French keyboard would type them."""


def key(master: Keyring) -> bytes:
    """The index's own key, derived from the master key (so it changes with it: after a new
    master key, `relais intake reindex-names` computes the index again)."""
    return codes.derive(master, NAME_INDEX_CONTEXT)


def normalise(text: str) -> str:
    """The letters of a name, without accents, case or separators."""
    folded = unicodedata.normalize("NFKD", text).casefold().translate(SPELT_OUT)
    return "".join(ch for ch in folded if ch.isalpha() and not unicodedata.combining(ch))


def term(index_key: bytes, normalised: str) -> bytes:
    """The value the index keeps for a normalised name (HMAC-SHA-256, 32 bytes)."""
    return codes.keyed_hash(index_key, "name", normalised)


def query_term(index_key: bytes, typed: str) -> bytes | None:
    """What a search looks up; None when the query is too short (or too long) to be a name."""
    if len(typed) > MAX_TYPED:
        return None
    normalised = normalise(typed)
    return term(index_key, normalised) if len(normalised) >= MIN_LETTERS else None


def spellings(first_name: str | None, last_name: str | None) -> set[str]:
    """The normalised forms a person is found by: each name alone, both in either order."""
    first, last = normalise(first_name or ""), normalise(last_name or "")
    found = {first, last}
    if first and last:
        found |= {first + last, last + first}
    return {s for s in found if len(s) >= MIN_LETTERS}


def terms(index_key: bytes, identity: Mapping[str, object] | None) -> set[bytes]:
    """What the index keeps for a person's identity as sealed (the JSON of `Identity`):
    nothing for an anonymous one, or one without a name."""
    if not identity:
        return set()
    first, last = identity.get("first_name"), identity.get("last_name")
    return {term(index_key, s) for s in spellings(first if isinstance(first, str) else None,
                                                   last if isinstance(last, str) else None)}
