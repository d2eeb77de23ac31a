"""Issue #14, the record of processing activities (GDPR art. 30) over HTTP: the auditor gets
it from the configuration, as JSON or as a French document; nobody else does."""

from __future__ import annotations

from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_intake import SCOPES, TEAM

AUDITOR = ("coordination", "audit:read")


async def test_the_auditor_gets_the_register_from_the_configuration(
        client: Client, tokens: Tokens) -> None:
    response = await client.get("/v1/audit/register", headers=tokens.headers(*AUDITOR))
    assert response.status == 200, await response.text()
    register = await response.json()
    assert {c["id"] for c in register["controllers"]} >= {TEAM, "mission-locale"}
    assert any(p["name"] == "Envoi des courriels (SMTP)" for p in register["processors"])
    page = await client.get("/v1/audit/register",
                            headers=tokens.headers(*AUDITOR, Accept="text/html"))
    assert page.status == 200 and page.content_type == "text/html"
    text = await page.text()
    assert "<h1>Registre des traitements (article 30 du RGPD)</h1>" in text
    assert "Mission locale du Grand Amiénois" in text and "24 mois" in text
    refused = await client.get("/v1/audit/register", headers=tokens.headers(TEAM, SCOPES))
    assert refused.status == 403
