"""The benches' variants: settings for Relais, and SOURCE, the checkout to run it from."""

from __future__ import annotations

from bench.intake_throughput import variant_settings


def test_a_variant_names_settings_and_perhaps_another_checkout() -> None:
    assert variant_settings("") == ({}, None)
    assert variant_settings("RELAIS_X=1;RELAIS_Y=a=b") == (
        {"RELAIS_X": "1", "RELAIS_Y": "a=b"}, None)
    assert variant_settings("SOURCE=/tmp/old;RELAIS_X=1") == ({"RELAIS_X": "1"}, "/tmp/old")
