"""The proof of a signed consent (issue #11, point 5) over real HTTP and PostgreSQL: the
signature drawn on the screen or the photo of the signed form sealed in the identity vault
(`POST /v1/people/{id}/evidence`), named by its SHA-256 in the consent and on the trail, read
back only by an organisation that met the person (logged), and shredded with the person. On
the outreach consent page: a consent signed on the screen, a paper form's photo, a missing
signature refused with nothing written, and a refusal that cancels what waited for the
consent (the browser journey is tests/browser/test_outreach.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from typing import Any

from services.consent import outreach
from services.intake import api as intake_api
from services.runtime.app import RUNTIME
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import ML
from tests.integration.test_intake import CCAS, INTAKE, SCOPES, TEAM, get, post
from tests.integration.test_outreach_consent import (
    ML_NAME,
    ORAL,
    consents,
    open_consent,
    proposed_contact,
    referrals,
)
from tests.integration.test_outreach_pages import form_data

PNG = base64.b64decode(intake_api.EXAMPLE_PNG)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF\x00" + bytes(range(200))


def evidence(kind: str, media_type: str, content: bytes) -> dict[str, str]:
    return {"kind": kind, "media_type": media_type,
            "content": base64.b64encode(content).decode()}


async def test_evidence_is_sealed_once_and_read_back_only_by_who_met_the_person(
        client: Client, tokens: Tokens) -> None:
    person_id = (await post(client, tokens, "/v1/intakes", INTAKE))["person_id"]
    url = f"/v1/people/{person_id}/evidence"
    sealed = await post(client, tokens, url, evidence("signature", "image/png", PNG))
    digest = hashlib.sha256(PNG).hexdigest()
    assert sealed["sha256"] == digest and sealed["size"] == len(PNG)
    assert sealed["kind"] == "signature" and sealed["person_id"] == person_id
    again = await post(client, tokens, url, evidence("signature", "image/png", PNG), status=200)
    assert again["sha256"] == digest  # the same image is the same evidence
    pool = client.app[RUNTIME].pool
    stored = await pool.fetchval("SELECT sealed FROM intake.evidence WHERE sha256 = $1", digest)
    assert PNG not in stored and len(stored) > len(PNG)  # sealed, not kept in clear
    assert await pool.fetchval("SELECT wrapped_key IS NOT NULL FROM intake.people"
                               " WHERE person_id = $1", uuid.UUID(person_id))

    read = await get(client, tokens, f"{url}/{digest}")
    assert read.status == 200
    assert base64.b64decode((await read.json())["content"]) == PNG
    logged = await pool.fetchrow("SELECT org, categories FROM intake.access_log"
                                 " WHERE person_id = $1", uuid.UUID(person_id))
    assert dict(logged) == {"org": TEAM, "categories": ["identity"]}
    # Another organisation, that never met the person: nothing, the same 404 as no one.
    assert (await get(client, tokens, f"{url}/{digest}", CCAS)).status == 404
    await post(client, tokens, url, evidence("signature", "image/png", PNG), org=CCAS,
               status=404)
    assert (await get(client, tokens, f"{url}/{'0' * 64}")).status == 404


async def test_bad_evidence_is_refused_with_nothing_written(client: Client,
                                                             tokens: Tokens) -> None:
    person_id = (await post(client, tokens, "/v1/intakes", INTAKE))["person_id"]
    url = f"/v1/people/{person_id}/evidence"
    for body in (evidence("signature", "image/jpeg", PNG),  # not what it says it is
                 evidence("signature", "image/gif", PNG),
                 evidence("photo", "image/png", PNG),
                 evidence("signature", "image/png", PNG + bytes(512 * 1024)),  # too large
                 {"kind": "signature", "media_type": "image/png", "content": "pas du base64!"}):
        problem = await post(client, tokens, url, body, status=422)
        assert problem["errors"], problem
    await post(client, tokens, f"/v1/people/{uuid.uuid4()}/evidence",
               evidence("signed_form", "image/jpeg", JPEG), status=404)
    assert await client.app[RUNTIME].pool.fetchval("SELECT count(*) FROM intake.evidence") == 0


async def test_erasing_the_person_erases_their_evidence(client: Client, tokens: Tokens) -> None:
    person_id = (await post(client, tokens, "/v1/intakes", INTAKE))["person_id"]
    url = f"/v1/people/{person_id}/evidence"
    sealed = await post(client, tokens, url, evidence("signed_form", "image/jpeg", JPEG))
    erased = await client.delete(f"/v1/people/{person_id}", headers=tokens.headers(TEAM,
                                                                                   SCOPES))
    assert erased.status == 204
    assert await client.app[RUNTIME].pool.fetchval("SELECT count(*) FROM intake.evidence") == 0
    assert (await get(client, tokens, f"{url}/{sealed['sha256']}")).status == 410
    await post(client, tokens, url, evidence("signed_form", "image/jpeg", JPEG), status=410)


async def test_a_consent_names_its_evidence_on_the_trail(client: Client,
                                                         tokens: Tokens) -> None:
    person_id = (await post(client, tokens, "/v1/intakes", INTAKE))["person_id"]
    sealed = await post(client, tokens, f"/v1/people/{person_id}/evidence",
                        evidence("signature", "image/png", PNG))
    body = {"person_id": person_id, "purposes": ["referral_partner"], "recipients": [ML],
            "categories": ["needs"], "notice_version": "2026-01", "method": "signed_screen",
            "captured_by": "Inès", "evidence_sha256": sealed["sha256"]}
    consent = await post(client, tokens, "/v1/consents", body)
    assert consent["evidence_sha256"] == sealed["sha256"]
    entries = [json.loads(e) for e in await client.app[RUNTIME].pool.fetchval(
        "SELECT array_agg(entry ORDER BY seq) FROM consent.trail")]
    [said] = [e for e in entries if e["kind"] == "consent.granted"]
    assert said["method"] == "signed_screen" and said["evidence_sha256"] == sealed["sha256"]
    oral = await post(client, tokens, "/v1/consents", body | {
        "method": "oral_witnessed", "witness": "Karim"}, status=422)
    assert "oral agreement has no signature" in json.dumps(oral)
    await post(client, tokens, "/v1/consents", body | {"evidence_sha256": "abc"}, status=422)


def data_url(media_type: str, content: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(content).decode()}"


SIGNED: dict[str, Any] = ORAL | {"methode": "signed_screen", "temoin": "",
                                 "signature": data_url("image/png", PNG)}


async def test_a_consent_signed_on_the_screen_is_sealed_and_hands_off(
        client: Client, tokens: Tokens) -> None:
    intake = await proposed_contact(client, tokens)
    html, fields = await open_consent(client, intake)
    assert 'name="methode" value="signed_screen" checked' in html  # the default
    assert 'id="signature-pad"' in html and "/static/consent/signature.js" in html
    url = f"/terrain/accord/{intake['id']}"
    sent = await client.post(url, data=form_data(fields, SIGNED), allow_redirects=False)
    assert sent.status == 303, await sent.text()
    twice = await client.post(url, data=form_data(fields, SIGNED), allow_redirects=False)
    assert twice.headers["Location"] == sent.headers["Location"]  # a double tap: once
    [consent] = await consents(client, tokens, intake["person_id"])
    digest = hashlib.sha256(PNG).hexdigest()
    assert consent["method"] == "signed_screen" and consent["evidence_sha256"] == digest
    pool = client.app[RUNTIME].pool
    assert await pool.fetchval("SELECT count(*) FROM intake.evidence WHERE person_id = $1",
                               uuid.UUID(intake["person_id"])) == 1

    async def handed_off() -> bool:
        return [r["status"] for r in await referrals(client, tokens, intake["id"])] == [
            "requested"]

    await wait_until(handed_off, 30, "the referral handed off")
    done = (await (await client.get(sent.headers["Location"])).text()).replace("&#39;", "'")
    assert "signé sur l'écran" in done and f"empreinte {digest[:12]}" in done


async def test_a_paper_form_photo_is_sealed_and_a_missing_proof_refused(
        client: Client, tokens: Tokens) -> None:
    intake = await proposed_contact(client, tokens)
    _html, fields = await open_consent(client, intake)
    url = f"/terrain/accord/{intake['id']}"
    unsigned = await client.post(url, data=form_data(fields, SIGNED | {"signature": ""}))
    text = (await unsigned.text()).replace("&#39;", "'")
    assert unsigned.status == 422 and outreach.ERRORS["signature"] in text
    fake = await client.post(url, data=form_data(fields, SIGNED | {
        "signature": data_url("image/png", b"GIF89a" + bytes(20))}))
    assert fake.status == 422
    no_photo = await client.post(url, data=form_data(fields, SIGNED | {
        "methode": "signed_paper", "signature": ""}))
    text = (await no_photo.text()).replace("&#39;", "'")
    assert no_photo.status == 422 and outreach.ERRORS["photo"] in text
    pool = client.app[RUNTIME].pool
    assert await pool.fetchval("SELECT count(*) FROM intake.evidence") == 0
    assert await pool.fetchval("SELECT count(*) FROM consent.consents") == 0

    photo = await client.post(url, data=form_data(fields, SIGNED | {
        "methode": "signed_paper", "signature": "", "photo": data_url("image/jpeg", JPEG)}),
        allow_redirects=False)
    assert photo.status == 303, await photo.text()
    [consent] = await consents(client, tokens, intake["person_id"])
    assert consent["method"] == "signed_paper"
    assert consent["evidence_sha256"] == hashlib.sha256(JPEG).hexdigest()
    assert await pool.fetchval("SELECT kind FROM intake.evidence") == "signed_form"


async def test_a_confirmed_refusal_cancels_what_waited_and_hands_nothing_off(
        client: Client, tokens: Tokens) -> None:
    intake = await proposed_contact(client, tokens)
    _html, fields = await open_consent(client, intake)
    url = f"/terrain/accord/{intake['id']}"
    asked = await client.post(url, data=form_data(fields, ORAL | {"decision": "refus"}))
    text = (await asked.text()).replace("&#39;", "'")
    assert asked.status == 200 and "<h1>La personne refuse</h1>" in text
    assert f"l'orientation vers {ML_NAME} sera annulée" in text
    assert [r["status"] for r in await referrals(client, tokens, intake["id"])] == [
        "awaiting_consent"]  # nothing done before it is confirmed

    confirm = [("csrf", fields["csrf"]), ("decision", "refus-confirme")]
    done = await client.post(url, data=confirm)
    text = (await done.text()).replace("&#39;", "'")
    assert done.status == 200 and "<h1>Refus enregistré</h1>" in text
    assert f"Rien n'est transmis à {ML_NAME}" in text
    [referral] = await referrals(client, tokens, intake["id"])
    assert referral["status"] == "cancelled"
    detail = await (await client.get(f"/v1/referrals/{referral['id']}", headers=tokens.headers(
        TEAM, "referral:read"))).json()
    last = detail["history"][-1]
    assert (last["action"], last["reason"], last["org"]) == ("cancel", outreach.REFUSAL, TEAM)
    again = await client.post(url, data=confirm)
    assert again.status == 200  # sent twice (or replayed): nothing more
    assert await consents(client, tokens, intake["person_id"]) == []
    pool = client.app[RUNTIME].pool
    records = await pool.fetch("SELECT headers, value FROM referral.outbox ORDER BY id")
    [cancelled] = [dict(r["headers"] if isinstance(r["headers"], list)
                        else json.loads(r["headers"]))["ce_id"]
                   for r in records if json.loads(r["value"]).get("status") == "cancelled"]

    async def heard() -> bool:  # the notify service has handled the cancellation
        return bool(await pool.fetchval("SELECT count(*) FROM notify.inbox WHERE event_id = $1",
                                        cancelled))

    await wait_until(heard, 30, "the cancellation handled by the notify service")
    told = await pool.fetchval(
        "SELECT array_agg(DISTINCT recipient_org) FROM notify.notifications")
    assert ML not in (told or [])  # the Mission locale was never told anything
