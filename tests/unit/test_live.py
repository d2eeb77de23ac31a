"""The caps on open inbox streams (pure bookkeeping of the hub, no I/O)."""

from __future__ import annotations

import pytest

from services.notify.live import InboxHub, TooManyStreams


def test_a_person_s_open_tabs_never_take_the_integration_s_places() -> None:
    hub = InboxHub()
    tabs = [hub.open("mission-locale", f"session:{n}", 5, 3, page=True) for n in range(3)]
    with pytest.raises(TooManyStreams):
        hub.open("mission-locale", "session:9", 5, 3, page=True)
    api = [hub.open("mission-locale", "ml-si", 5, 3) for _ in range(3)]  # its own places
    with pytest.raises(TooManyStreams):
        hub.open("mission-locale", "ml-si-2", 5, 3)
    assert hub.open("france-travail", "session:1", 5, 3, page=True).org == "france-travail"
    hub.close(tabs[0])
    assert hub.open("mission-locale", "session:9", 5, 3, page=True).page
    hub.wake("mission-locale")
    assert all(s.wake.is_set() for s in [*tabs[1:], *api]), "one wake for both kinds"
