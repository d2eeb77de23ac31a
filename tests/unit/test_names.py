"""The search by name's normalisation and terms (services/intake/names.py): how a typed name
becomes the one value the blind index looks up."""

from __future__ import annotations

import pytest

from services.intake import card, names
from services.runtime.sealing import Keyring

MASTER = Keyring.single(bytes(range(32)))
KEY = names.key(MASTER)


@pytest.mark.parametrize(("typed", "normalised"), [
    ("Léa", "lea"),
    ("  MARTIN  ", "martin"),
    ("Élodie-Anne D'Hôtel", "elodieannedhotel"),
    ("elodie anne dhotel", "elodieannedhotel"),
    ("O\u2019Brien", "obrien"),  # a typographic apostrophe
    ("Jean\u2011Pierre", "jeanpierre"),  # a non-breaking hyphen
    ("Jean\u00a0Pierre", "jeanpierre"),  # a non-breaking space
    ("Zoë Núñez", "zoenunez"),
    ("Lætitia Œuvray", "laetitiaoeuvray"),
    ("Straße", "strasse"),
    ("Søren Łukasz", "sorenlukasz"),
    ("\uff2c\uff45\uff41", "lea"),  # full-width letters (NFKD)
    ("e\u0301lise", "elise"),  # an accent typed as a combining sign
    ("Mme. Léa (2006)", "mmelea"),  # what is not a letter goes
    ("Фатима", "фатима"),  # other alphabets stay, folded
    ("", ""),
])
def test_a_name_is_its_letters_without_accents_case_or_separators(typed: str,
                                                                    normalised: str) -> None:
    assert names.normalise(typed) == normalised


def test_a_person_is_found_by_each_name_and_both_in_either_order() -> None:
    assert names.spellings("Léa", "Martin-Dupré") == {
        "lea", "martindupre", "leamartindupre", "martinduprelea"}
    assert names.spellings("Léa", None) == {"lea"}
    assert names.spellings(None, "Martin") == {"martin"}
    assert names.spellings(None, None) == set()
    assert names.spellings("-", "") == set()  # nothing a search could reach


def test_terms_are_keyed_hashes_of_those_forms_only() -> None:
    terms = names.terms(KEY, {"first_name": "Léa", "last_name": "Martin", "phone": "0612"})
    assert len(terms) == 4 and all(len(t) == 32 for t in terms)
    assert terms == {names.term(KEY, s) for s in ("lea", "martin", "leamartin", "martinlea")}
    assert names.terms(KEY, None) == set()
    assert names.terms(KEY, {"phone": "06 12 34 56 78", "email": "lea@example.org"}) == set()
    for typed in ("LÉA MARTIN", "martin léa", "Martin", " lea "):
        assert names.query_term(KEY, typed) in terms, typed
    assert names.query_term(KEY, "Mart") not in terms  # exact, by design
    assert names.query_term(KEY, "Léa Martine") not in terms


def test_a_query_too_short_or_too_long_looks_nothing_up() -> None:
    for typed in ("", "L", " - ' ", "L.", "é"):
        assert names.query_term(KEY, typed) is None, typed
    assert names.query_term(KEY, "Ly") is not None  # a name of two letters is a name
    assert names.query_term(KEY, "a" * (names.MAX_TYPED + 1)) is None


def test_the_index_has_its_own_key_derived_from_the_master_key() -> None:
    assert card.key(MASTER) != KEY and len(KEY) == 32
    other = names.key(Keyring.single(bytes(32)))
    assert names.term(other, "lea") != names.term(KEY, "lea")
    assert names.term(KEY, "lea") == names.term(names.key(MASTER), "lea")  # stable
