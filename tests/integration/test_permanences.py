"""Permanences beyond every week: a recurrence (RFC 5545 rule) put in the directory is listed
by `GET /v1/permanences`, served as an iCalendar series by `GET /v1/permanences.ics`, and
shown on the outreach team's day only on its days."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import icalendar

from services.runtime.app import RUNTIME
from services.runtime.web import PARIS
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import PASSWORD, TEAM, account

FORTNIGHT = {"id": "camion-quinzaine", "site": "qpv-amiens-nord", "mobile": True,
             "recurrences": [{"rule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU", "start": "09:30",
                              "end": "12:30", "first": "2026-11-03",
                              "exceptions": ["2026-12-01"]}],
             "organisations": [TEAM, "france-travail"]}
BYDAY = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


async def put_directory(client: Client, tokens: Tokens, *permanences: dict[str, Any]) -> None:
    directory = await (await client.get("/v1/directory",
                                        headers=tokens.headers(TEAM, "intake:read"))).json()
    directory["permanences"] += permanences
    put = await client.put("/v1/directory", json=directory,
                           headers=tokens.headers("coordination", "directory:write"))
    assert put.status == 200, await put.text()


async def test_the_occurrences_of_a_period_follow_the_rules(client: Client,
                                                           tokens: Tokens) -> None:
    await put_directory(client, tokens, FORTNIGHT)
    headers = tokens.headers("ccas", "intake:read")
    answer = await client.get("/v1/permanences?from=2026-11-30&to=2026-12-21"
                              "&site=qpv-amiens-nord", headers=headers)
    assert answer.status == 200, await answer.text()
    listed = await answer.json()
    assert listed["period"] == {"from": "2026-11-30", "to": "2026-12-21"}
    assert [(o["permanence"], o["start"]) for o in listed["items"]] == [
        ("camion-amiens-nord-mercredi", "2026-12-02T14:00:00+01:00"),  # 1 December: excepted
        ("camion-amiens-nord-mercredi", "2026-12-09T14:00:00+01:00"),
        ("camion-quinzaine", "2026-12-15T09:30:00+01:00"),  # not 8 December: every other week
        ("camion-amiens-nord-mercredi", "2026-12-16T14:00:00+01:00")]
    fortnight = listed["items"][2]
    assert fortnight | {"start": None} == {
        "permanence": "camion-quinzaine", "site": "qpv-amiens-nord",
        "site_name": fortnight["site_name"], "commune": "80021", "mobile": True,
        "organisations": [TEAM, "france-travail"], "start": None,
        "end": "2026-12-15T12:30:00+01:00"}
    month = await (await client.get("/v1/permanences?from=2026-11-01&to=2026-12-01"
                                    "&organisation=france-travail&site=qpv-amiens-nord",
                                    headers=headers)).json()
    assert [o["start"][:10] for o in month["items"] if o["permanence"] == "camion-quinzaine"] \
        == ["2026-11-03", "2026-11-17"]

    for query in ("from=2026-13-01", "from=2026-01-01&to=2027-06-01", "from=2026-12-01&to="
                  "2026-11-01"):
        bad = await client.get(f"/v1/permanences?{query}", headers=headers)
        assert bad.status == 400 and bad.content_type == "application/problem+json", query
    assert (await client.get("/v1/permanences")).status == 401


async def test_the_calendar_feed_has_the_series_with_its_rule(client: Client,
                                                              tokens: Tokens) -> None:
    await put_directory(client, tokens, FORTNIGHT)
    feed = await client.get("/v1/permanences.ics?from=2026-11-01&to=2026-12-01"
                            "&site=qpv-amiens-nord")  # no token: a calendar subscribes
    assert feed.status == 200 and feed.content_type == "text/calendar"
    calendar = icalendar.Calendar.from_ical(await feed.read())
    events = {e.uid.split("@")[0]: e for e in calendar.events}
    assert set(events) == {"camion-quinzaine.recurrence-0", "camion-amiens-nord-mercredi.slot-0"}
    series = events["camion-quinzaine.recurrence-0"]
    assert series.start == datetime(2026, 11, 3, 9, 30, tzinfo=PARIS)
    [rule] = series.rrules
    assert rule["FREQ"] == ["WEEKLY"] and rule["INTERVAL"] == [2] and rule["BYDAY"] == ["TU"]
    assert series.exdates == [datetime(2026, 12, 1, 9, 30, tzinfo=PARIS)]
    assert series.summary == "Camion — Amiens Nord, parking du centre commercial"
    assert "France Travail" in (series.description or "")
    assert (await client.get("/v1/permanences.ics?to=nope")).status == 400


async def test_the_day_shows_a_fortnightly_permanence_on_its_days_only(
        client: Client, tokens: Tokens) -> None:
    noon = datetime.now(PARIS).replace(hour=12, minute=0, second=0, microsecond=0)
    today = noon.date()  # the app's clock is set to noon of that day below: no midnight race
    await put_directory(client, tokens, {
        "id": "camion-un-sur-deux", "site": "qpv-marcel-paul", "mobile": True,
        "recurrences": [{"rule": f"FREQ=WEEKLY;INTERVAL=2;BYDAY={BYDAY[today.weekday()]}",
                         "start": "00:00", "end": "23:59", "first": today.isoformat()}],
        "organisations": [TEAM]})
    await account(client, "nadia@camion.example.org", org=TEAM, name="Nadia Benali")
    signed = await client.post("/connexion", data={"email": "nadia@camion.example.org",
                                                   "password": PASSWORD},
                               allow_redirects=False)
    assert signed.status == 303
    place = 'value="permanence:camion-un-sur-deux"'
    for weeks, shown in ((0, True), (1, False), (2, True)):
        moment = noon + timedelta(weeks=weeks)
        client.app[RUNTIME].clock = (lambda at: lambda: at)(moment)
        html = await (await client.get("/terrain")).text()
        assert (place in html) is shown, f"in {weeks} week(s)"
        assert "sur deux à partir du" in html  # the other places say its rhythm
