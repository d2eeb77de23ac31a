"""Closing the loop for the first sender (issue #16, points 6 and 7), over real HTTP, SMTP
and PostgreSQL: the outreach team that met the person is told of each answer of the partner
the commission referred the person to, up to the outcome, and sees the chain in the
referral's detail; a refusal proposes the next partner with places, and the sender sends the
referral on to it in one action."""

from __future__ import annotations

import uuid
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.referral import routing
from services.runtime.app import create_app
from services.runtime.settings import Settings
from tests.conftest import Mailbox, wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import account, sign_in
from tests.integration.test_referral import (
    CCAS,
    COMMISSION,
    FT,
    ML,
    TEAM,
    act,
    consent,
    headers,
    intake,
    referral_of,
)

TEAM_MAILBOX = "equipe@camion.example.org"


@pytest.fixture
def settings(settings: Settings, smtp_server: Mailbox) -> Settings:
    """The integration tests' settings, with the test's SMTP server."""
    return settings.model_copy(update={"smtp_port": smtp_server.port})


async def detail(client: Client, tokens: Tokens, org: str, referral_id: str) -> Any:
    response = await client.get(f"/v1/referrals/{referral_id}", headers=headers(tokens, org))
    assert response.status == 200, await response.text()
    return await response.json()


async def inbox(client: Client, tokens: Tokens, org: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/inbox", headers=tokens.headers(org, "notification:read"))
    assert response.status == 200, await response.text()
    items: list[dict[str, Any]] = (await response.json())["items"]
    return items


def texts_to(smtp_server: Mailbox, address: str, marker: str) -> list[tuple[str, str]]:
    """(subject, text) of the emails this address received whose subject has the marker."""
    found = []
    for message, (_, rcpts) in zip(smtp_server.messages, smtp_server.envelopes, strict=True):
        subject = str(make_header(decode_header(message["Subject"])))
        if rcpts == [address] and marker in subject:
            payload = message.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found.append((subject, payload.decode().replace("\r\n", "\n")))
    return found


# --- 6. the outreach team learns the end of the chain ----------------------------------------


async def test_the_first_sender_is_told_each_answer_after_the_commission_and_sees_the_chain(
    client: Client, tokens: Tokens, smtp_server: Mailbox
) -> None:
    met = await intake(client, tokens, needs=["employment", "housing", "health"])
    await consent(client, tokens, met["person_id"], [COMMISSION, ML],
                  ["referral_commission", "referral_partner"])
    first = await referral_of(client, tokens, met["id"], "requested")
    assert first["target"] == COMMISSION
    session = await client.post("/v1/commission/sessions", json={
        "held_on": "2026-12-03", "members": [ML, FT, CCAS, TEAM]},
        headers=headers(tokens, TEAM, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert session.status == 201, await session.text()
    opened = await session.json()
    decided = await client.post(f"/v1/commission/sessions/{opened['id']}/decisions", json={
        "referral_id": first["id"], "decision": "refer_partner", "partner": ML,
        "text": "CEJ à la Mission locale"}, headers=headers(tokens, ML))
    assert decided.status == 200, await decided.text()
    follow_up = next(a for a in (await decided.json())["agenda"]
                     if a["referral_id"] == first["id"])["follow_up"]
    for action, body in (("receive", {}), ("accept", {"text": "RDV mardi"}),
                         ("start", {"milestone": "first_appointment"}),
                         ("complete", {"outcome": "contrat_engagement_jeune"})):
        response = await act(client, tokens, ML, follow_up, action, **body)
        assert response.status == 200, await response.text()

    # every answer of the partner reaches the team, by email (in French) and in its inbox
    marker = f"Orientation {first['id'][:8]} : suite chez"

    async def all_emailed() -> bool:
        return len(texts_to(smtp_server, TEAM_MAILBOX, marker)) == 4

    await wait_until(all_emailed, 30, "the four answers emailed to the outreach team")
    emails = texts_to(smtp_server, TEAM_MAILBOX, marker)
    assert sorted(s.rsplit(" : ", 1)[1] for s, _ in emails) == sorted([
        "accusé de réception", "acceptée", "accompagnement commencé", "terminée"])
    last = next(text for subject, text in emails if subject.endswith("terminée"))
    assert f"Suite à votre orientation {first['id']}, la personne a été\norientée par " \
        "Commission de remobilisation du territoire vers Mission locale du Grand Amiénois,\n" \
        "qui a répondu :\nterminée" in last
    assert "(issue : Contrat d'engagement jeune)" in last
    assert f"/orientations/{first['id']}" in last and "/lien/" not in last

    async def in_inbox() -> bool:
        items = await inbox(client, tokens, TEAM)
        return sum(1 for i in items if i["referral_id"] == first["id"]
                   and "suite chez" in i["subject"]) == 4

    await wait_until(in_inbox, 30, "the four answers in the team's inbox")

    # the chain, in the first referral's detail: statuses and codes, not the dossier
    seen = await detail(client, tokens, TEAM, first["id"])
    assert [(c["id"], c["sender_org"], c["target"], c["status"]) for c in seen["chain"]] == [
        (first["id"], TEAM, COMMISSION, "completed"),
        (follow_up, COMMISSION, ML, "completed")]
    assert seen["chain"][1]["outcome"] == "contrat_engagement_jeune"
    assert set(seen["chain"][1]) == {
        "id", "part_of", "sender_org", "target", "purpose", "status", "origin",
        "reject_reason", "outcome", "proposal", "created_at", "updated_at"}
    # the partner, a recipient only, does not get the chain
    assert (await detail(client, tokens, ML, follow_up))["chain"] == []
    # and the first sender still cannot open the follow-up itself (nor its dossier)
    stranger = await client.get(f"/v1/referrals/{follow_up}", headers=headers(tokens, TEAM))
    assert stranger.status == 404

    # the console's page of the first referral shows the chain
    await account(client, "nadia@camion.example.org", org=TEAM)
    await sign_in(client, "nadia@camion.example.org")
    page = await (await client.get(f"/orientations/{first['id']}")).text()
    assert "Le parcours de la personne" in page
    assert "Commission de remobilisation du territoire → Mission locale du Grand Amiénois" \
        in page and "Contrat d" in page


# --- 7. a refusal proposes the next partner, and the sender sends it on ----------------------


async def test_a_refusal_names_the_next_partner_and_the_sender_sends_it_on(
    client: Client, tokens: Tokens
) -> None:
    met = await intake(client, tokens)
    routed = await referral_of(client, tokens, met["id"], "awaiting_consent")
    ranked = [c["partner"] for c in routed["explanation"]["candidates"]]
    assert ranked[0] == ML and len(ranked) > 1
    proposal = ranked[1]  # the next candidate, with places
    await consent(client, tokens, met["person_id"], [ML, proposal])
    referral = await referral_of(client, tokens, met["id"], "requested")
    too_early = await client.post(f"/v1/referrals/{referral['id']}/forward", json={},
                                  headers=headers(tokens, TEAM))
    assert too_early.status == 409  # an open referral is not sent on
    refused = await act(client, tokens, ML, referral["id"], "reject", reason="no_place")
    assert refused.status == 200, await refused.text()
    step = (await refused.json())["history"][-1]
    assert step["status"] == "rejected" and step["detail"]["proposal"] == proposal

    async def told() -> Any:
        return next((i for i in await inbox(client, tokens, TEAM)
                     if i["referral_id"] == referral["id"] and "refusée" in i["subject"]),
                    None)

    await wait_until(told, 30, "the refusal in the team's inbox")
    notice = await told()
    partners = await (await client.get("/v1/partners", headers=headers(tokens, TEAM))).json()
    name = next(p["name"] for p in partners["items"] if p["id"] == proposal)
    assert f"Partenaire suivant proposé (il a des places) : {name}." in notice["body"]

    not_the_sender = await client.post(f"/v1/referrals/{referral['id']}/forward", json={},
                                       headers=headers(tokens, ML))
    assert not_the_sender.status == 403
    sent_on = await client.post(f"/v1/referrals/{referral['id']}/forward", json={},
                                headers=headers(tokens, TEAM))
    assert sent_on.status == 201, await sent_on.text()
    new = await sent_on.json()
    assert new["target"] == proposal and new["part_of"] == referral["id"]
    assert new["sender_org"] == TEAM and new["origin"] == "forward"
    assert new["status"] == "requested"  # the consent covers the next partner already
    assert new["explanation"]["rule"] == "forward"
    again = await client.post(f"/v1/referrals/{referral['id']}/forward", json={},
                              headers=headers(tokens, TEAM))
    assert again.status == 200 and (await again.json())["id"] == new["id"]
    chain = (await detail(client, tokens, TEAM, referral["id"]))["chain"]
    assert [(c["target"], c["status"], c["proposal"]) for c in chain] == [
        (ML, "rejected", proposal), (proposal, "requested", None)]


async def test_the_coordination_has_a_refusal_for_lack_of_places_sent_on_by_a_rule(
    settings: Settings, tmp_path: Path
) -> None:
    """The rules file's `on_refusal`: Relais sends the refused referral on at once, for the
    reasons listed (here a lack of places), and not for the others."""
    rules = yaml.safe_load((Path(routing.__file__).parent / "rules.yaml").read_text())
    rules["on_refusal"] = {"forward": True, "reasons": ["no_place"]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, allow_unicode=True))
    ruled = settings.model_copy(update={"routing_rules_file": tmp_path / "rules.yaml"})
    assert ruled.database_url
    app = create_app(ruled, ruled.database_url, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        tokens = Tokens(await client.app[KEYS].signing(), ruled)
        sent_on = []
        for reason in ("no_place", "not_interested"):
            met = await intake(client, tokens)
            routed = await referral_of(client, tokens, met["id"], "awaiting_consent")
            proposal = routed["explanation"]["candidates"][1]["partner"]
            await consent(client, tokens, met["person_id"], [ML, proposal])
            referral = await referral_of(client, tokens, met["id"], "requested")
            refused = await act(client, tokens, ML, referral["id"], "reject", reason=reason)
            assert refused.status == 200, await refused.text()
            chain = (await detail(client, tokens, TEAM, referral["id"]))["chain"]
            sent_on.append([(c["target"], c["status"], c["origin"]) for c in chain])
        assert sent_on[0] == [(ML, "rejected", "routing"), (proposal, "requested", "forward")]
        assert sent_on[1] == []  # not for this reason: the sender decides
