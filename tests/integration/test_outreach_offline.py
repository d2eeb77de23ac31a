"""The outreach app without a network (issue #11), over real HTTP and PostgreSQL, with
entries sealed as the browser seals them (services/runtime/offline.py's `seal_entry`, the same
construction as static/hors-ligne.js; the browser itself: tests/browser/test_outreach.py):
the offline page carries what the device needs and nothing personal; each entry's contact is
recorded once at the time it was made, then the person's consent (its signature sealed, the
notice shown named, the time they agreed kept) or their refusal; what cannot be read or is
not valid is refused in French with nothing written; a script's call needs the session and
the page's token; signing out wipes the device's storage."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.intake import api as intake_api
from services.runtime import offline
from services.runtime.app import RUNTIME
from services.runtime.sealing import Keyring
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import ML, TEAM, csrf
from tests.integration.test_outreach_consent import consents, referrals
from tests.integration.test_outreach_pages import TODAY, intakes, signed_in_counsellor

PNG = "data:image/png;base64," + intake_api.EXAMPLE_PNG
WHEN = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def entry(**answer: Any) -> dict[str, Any]:
    """What the page keeps for one contact made two hours ago, with the person's answer."""
    contact = {"lieu": f"permanence:{TODAY}", "besoins": ["employment"], "situation": [],
               "age": "18_25", "commune": "", "duree": "15", "note": "", "prenom": "",
               "nom": "", "telephone": "", "courriel": "", "moment": WHEN.isoformat()}
    accord = {"decision": "accord", "destinataires": [ML], "finalites": ["referral_partner"],
              "donnees": ["needs", "situation"], "methode": "signed_screen", "temoin": "",
              "signature": PNG, "notice": "2026-01",
              "moment": (WHEN + timedelta(minutes=3)).isoformat()} | answer
    return {"contact": contact, "accord": accord}


async def offline_page(client: Client) -> tuple[str, dict[str, str], str]:
    page = await client.get("/terrain/hors-ligne")
    html = await page.text()
    assert page.status == 200, html
    found = re.search(r'<script type="application/json" id="cle-publique">(.*?)</script>', html)
    assert found
    return html, json.loads(found.group(1)), csrf(html)


async def send(client: Client, path: str, sealed: offline.Sealed, token: str,
               device: datetime | None = None) -> Any:
    headers = {"X-CSRF-Token": token}
    if device is not None:  # the device's own clock, as the page sends it
        headers[offline.DEVICE_TIME] = device.isoformat()
    return await client.post(path, json=sealed.model_dump(), headers=headers)


async def test_the_offline_page_holds_what_the_device_needs_and_nothing_personal(
        client: Client, tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    html, public, _token = await offline_page(client)
    assert public["kty"] == "EC" and public["crv"] == "P-256" and "d" not in public
    assert "Étouvie, place du marché" in html  # today's places
    assert f'value="{ML}"' in html and "Mission locale du Grand Amiénois" in html
    assert f'value="{TEAM}"' not in html  # the team itself is no recipient
    assert 'data-notice="2026-01"' in html and "Notice d'information, version 2026-01" in html
    assert "/static/intake/hors-ligne.js" in html
    worker = await client.get("/terrain/sw.js")
    assert worker.status == 200 and worker.headers["Service-Worker-Allowed"] == "/"
    assert "/terrain/hors-ligne" in await worker.text()
    manifest = await (await client.get("/terrain/manifest.webmanifest")).json()
    assert manifest["start_url"] == "/terrain" and manifest["display"] == "standalone"
    for icon in manifest["icons"]:
        assert (await client.get(icon["src"])).status == 200


async def test_entries_are_recorded_once_at_their_own_time_and_hand_off(
        client: Client, tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    _html, public, token = await offline_page(client)
    sealed = [offline.seal_entry(public, TEAM, str(uuid.uuid4()), entry()),
              offline.seal_entry(public, TEAM, str(uuid.uuid4()), entry(
                  methode="oral_witnessed", temoin="Karim Diallo", signature=""))]
    for item in sealed:
        first = await send(client, "/terrain/envoi", item, token)
        assert first.status == 201, await first.text()
        said = await first.json()
        again = await send(client, "/terrain/envoi", item, token)  # sent twice: once
        assert again.status == 200 and (await again.json())["intake_id"] == said["intake_id"]
        answer = await send(client, f"/terrain/accord/{said['intake_id']}/envoi", item, token)
        assert answer.status == 201, await answer.text()
        repeat = await send(client, f"/terrain/accord/{said['intake_id']}/envoi", item, token)
        assert (await repeat.json())["consent_id"] == (await answer.json())["consent_id"]

    recorded = await intakes(client, tokens)
    assert len(recorded) == 2
    for intake in recorded:
        assert datetime.fromisoformat(intake["contacted_at"]) == WHEN  # not when it synced
        [consent] = await consents(client, tokens, intake["person_id"])
        assert datetime.fromisoformat(consent["granted_at"]) == WHEN + timedelta(minutes=3)
        assert consent["notice_version"] == "2026-01"

        async def handed_off(intake: dict[str, Any] = intake) -> bool:
            return [r["status"] for r in await referrals(client, tokens, intake["id"])] == [
                "requested"]

        await wait_until(handed_off, 30, "the referral handed off")
    methods = await client.app[RUNTIME].pool.fetch(
        "SELECT method, evidence_sha256 IS NOT NULL AS proven FROM consent.consents"
        " ORDER BY method")
    assert [tuple(r) for r in methods] == [("oral_witnessed", False), ("signed_screen", True)]


async def test_a_refusal_from_the_device_cancels_what_routing_proposed(
        client: Client, tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    _html, public, token = await offline_page(client)
    item = offline.seal_entry(public, TEAM, str(uuid.uuid4()), entry(decision="refus"))
    said = await (await send(client, "/terrain/envoi", item, token)).json()

    async def routed() -> bool:
        return bool(await referrals(client, tokens, said["intake_id"]))

    await wait_until(routed, 30, "routing's proposal")
    refused = await send(client, f"/terrain/accord/{said['intake_id']}/envoi", item, token)
    assert refused.status == 200 and (await refused.json()) == {"cancelled": 1}
    assert [r["status"] for r in await referrals(client, tokens, said["intake_id"])] == [
        "cancelled"]
    assert await consents(client, tokens, said["person_id"]) == []


async def test_what_cannot_be_read_or_is_not_valid_is_refused_with_nothing_written(
        client: Client, tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    _html, public, token = await offline_page(client)
    other = offline.seal_entry(public, "ccas", str(uuid.uuid4()), entry())  # another org's
    refused = await send(client, "/terrain/envoi", other, token)
    assert refused.status == 422 and "ne peut pas ouvrir" in (await refused.json())["detail"]
    broken = offline.seal_entry(public, TEAM, str(uuid.uuid4()), entry())
    altered = broken.model_copy(update={"ct": broken.ct[:-4] + "AAAA"})
    assert (await send(client, "/terrain/envoi", altered, token)).status == 422
    nothing = entry()
    nothing["contact"]["besoins"] = []
    invalid = await send(client, "/terrain/envoi",
                         offline.seal_entry(public, TEAM, str(uuid.uuid4()), nothing), token)
    problem = await invalid.json()
    assert invalid.status == 422 and "Choisissez au moins un besoin." in problem["detail"]
    pool = client.app[RUNTIME].pool
    assert await pool.fetchval("SELECT count(*) FROM intake.intakes") == 0

    unsigned = offline.seal_entry(public, TEAM, str(uuid.uuid4()), entry(signature=""))
    said = await (await send(client, "/terrain/envoi", unsigned, token)).json()
    answer = await send(client, f"/terrain/accord/{said['intake_id']}/envoi", unsigned, token)
    problem = await answer.json()
    assert answer.status == 422 and "Faites signer la personne" in problem["detail"]
    assert await pool.fetchval("SELECT count(*) FROM consent.consents") == 0

    forged = await client.post("/terrain/envoi", json=unsigned.model_dump(),
                               headers={"X-CSRF-Token": "pas-le-bon"})
    assert forged.status == 403 and forged.content_type == "application/problem+json"
    client.session.cookie_jar.clear()
    gone = await send(client, "/terrain/envoi", unsigned, token)
    assert gone.status == 401 and "reconnectez-vous" in (await gone.json())["detail"]


async def test_signing_out_wipes_the_device(client: Client, tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    page = await (await client.get("/terrain")).text()
    out = await client.post("/deconnexion", data={"csrf": csrf(page)}, allow_redirects=False)
    assert out.status == 303 and out.headers["Clear-Site-Data"] == '"cache", "storage"'


def test_an_entry_opens_only_with_the_server_s_key_for_its_organisation() -> None:
    master, other = Keyring.single(bytes(range(32))), Keyring.single(bytes(32))
    public = offline.public_jwk(master)
    sealed = offline.seal_entry(public, TEAM, str(uuid.uuid4()), {"contact": {"a": ["b"]}})
    assert offline.open_entry(master, TEAM, sealed) == {"contact": {"a": ["b"]}}
    for key, org in ((master, "ccas"), (other, TEAM)):
        try:
            offline.open_entry(key, org, sealed)
        except offline.OpenError:
            continue
        raise AssertionError(f"opened with {org}")
    assert offline.form_of({"a": ["b", "c"], "d": "e"}).getall("a") == ["b", "c"]


async def test_a_device_clock_that_is_off_records_the_right_times(
        client: Client, tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    _html, public, token = await offline_page(client)
    ahead = timedelta(minutes=10)  # the tablet's clock is 10 minutes fast
    now = datetime.now(UTC).replace(microsecond=0)
    made = entry()
    made["contact"]["moment"] = (now + ahead - timedelta(minutes=5)).isoformat()
    made["accord"]["moment"] = (now + ahead - timedelta(minutes=4)).isoformat()
    item = offline.seal_entry(public, TEAM, str(uuid.uuid4()), made)
    said = await (await send(client, "/terrain/envoi", item, token, now + ahead)).json()
    answer = await send(client, f"/terrain/accord/{said['intake_id']}/envoi", item, token,
                        now + ahead)
    assert answer.status == 201, await answer.text()  # not refused as given in the future
    [intake] = await intakes(client, tokens)
    [consent] = await consents(client, tokens, intake["person_id"])
    for at, expected in ((intake["contacted_at"], now - timedelta(minutes=5)),
                         (consent["granted_at"], now - timedelta(minutes=4))):
        assert abs(datetime.fromisoformat(at) - expected) < timedelta(seconds=5)


async def test_an_answer_goes_with_its_own_contact_and_says_what_it_does_not_cover(
        client: Client, tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    _html, public, token = await offline_page(client)
    first = offline.seal_entry(public, TEAM, str(uuid.uuid4()), entry())
    other = entry()
    other["contact"]["moment"] = (WHEN - timedelta(hours=1)).isoformat()
    other["accord"] |= {"destinataires": ["ccas"], "moment": other["contact"]["moment"]}
    second = offline.seal_entry(public, TEAM, str(uuid.uuid4()), other)
    one = await (await send(client, "/terrain/envoi", first, token)).json()
    two = await (await send(client, "/terrain/envoi", second, token)).json()
    crossed = await send(client, f"/terrain/accord/{one['intake_id']}/envoi", second, token)
    assert crossed.status == 409  # another contact's answer is not attached to this one
    assert await consents(client, tokens, one["person_id"]) == []
    answer = await send(client, f"/terrain/accord/{two['intake_id']}/envoi", second, token)
    said = await answer.json()
    assert answer.status == 201 and said["uncovered"] == ["Mission locale du Grand Amiénois"]
    assert [r["status"] for r in await referrals(client, tokens, two["intake_id"])] == [
        "awaiting_consent"]  # the person accepted the CCAS, routing proposes the ML
