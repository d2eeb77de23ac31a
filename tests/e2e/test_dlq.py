"""`relais dlq list|show|replay` on both transports, run as an operator runs it (the `relais`
command in its own process), against the whole of Relais: a consumer dead-letters an event
its database refuses, the operator sees it unhandled, repairs the cause, replays it; it is
applied once, shown handled, and a second replay is refused."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient

from schemas.asyncapi import dead_letter_topic
from services.runtime.settings import Settings
from services.runtime.transport import make_transport
from tests.conftest import Mailbox, wait_until
from tests.e2e.conftest import Tokens
from tests.e2e.test_skeleton import consent_body, intake_body, post, wait_for_referral

Client = TestClient[Any, Any]
RELAIS = [sys.executable, "-m", "services.cli"]
REFUSE = """
CREATE FUNCTION public.closed_for_repairs() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'intake.consents is closed for repairs'; END $$;
CREATE TRIGGER closed_for_repairs BEFORE INSERT OR UPDATE ON intake.consents
FOR EACH ROW EXECUTE FUNCTION public.closed_for_repairs();
"""
REPAIR = "DROP TRIGGER closed_for_repairs ON intake.consents"


async def relais(settings: Settings, tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    """`relais dlq ...` with the settings an operator would give it: --database and, on
    Kafka, --kafka and the namespace in RELAIS_KAFKA_NAMESPACE."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")
           and k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    env["RELAIS_DATA_DIR"] = str(tmp_path / "cli")
    assert settings.database_url
    where = ["--database", settings.database_url]
    if settings.transport == "kafka":
        assert settings.kafka_bootstrap_servers
        where += ["--kafka", settings.kafka_bootstrap_servers]
        env["RELAIS_KAFKA_NAMESPACE"] = settings.kafka_namespace
    process = await asyncio.create_subprocess_exec(
        *RELAIS, "dlq", *argv, *where, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_dead_letter_is_listed_shown_replayed_once_then_refused(
    client: Client, tokens: Tokens, settings: Settings, smtp_server: Mailbox, tmp_path: Path,
) -> None:
    assert settings.database_url
    db = await asyncpg.connect(settings.database_url)
    try:
        await db.execute(REFUSE)  # the intake consumer's handler now fails on consent.granted
        code, out, err = await relais(settings, tmp_path, "list")
        assert (code, out, err) == (0, "no dead letters\n", ""), err

        intake = await post(client, tokens, "/v1/intakes", intake_body())
        await wait_for_referral(client, tokens, intake["id"], "awaiting_consent")
        await post(client, tokens, "/v1/consents", consent_body(intake["person_id"]))
        transport = make_transport(settings, settings.database_url)

        async def dead_lettered() -> bool:
            found = await transport.read_topic(dead_letter_topic("intake"))
            if not found:
                await asyncio.sleep(0.3)
            return bool(found)

        await wait_until(dead_lettered, 60, "the consent.granted in relais.dlq.intake")
        [dead] = await transport.read_topic(dead_letter_topic("intake"))
        handle, event_id = f"{dead.partition}:{dead.offset}", dict(dead.headers)["ce_id"].decode()
        # the other consumers of relais.consent went on: the referral was requested, emailed
        await wait_for_referral(client, tokens, intake["id"], "requested")
        await wait_until(lambda: len(smtp_server.messages) == 1, 60, "the referral's email")

        code, out, err = await relais(settings, tmp_path, "list")
        assert code == 0, err
        header, row = out.splitlines()
        assert header.split()[:3] == ["CONSUMER", "DLQ", "FROM"]
        assert row.split()[:3] == ["intake", handle, "relais.consent"]
        for column in (event_id, "fr.relais.consent.granted.v1", " 5 ", " unhandled ",
                       "RaiseError('intake.consents is closed for repairs')"):
            assert column in row, (column, row)

        code, out, err = await relais(settings, tmp_path, "show", "intake", handle)
        assert code == 0, err
        assert f"status:   unhandled: event {event_id} is not in intake.inbox" in out
        assert f'"id": "{event_id}",' in out  # the CloudEvent, pretty JSON
        assert '"type": "fr.relais.consent.granted.v1",' in out
        assert f'"person_id": "{intake["person_id"]}"' in out
        assert "relais_dlq_attempts: 5" in out
        assert out.rstrip().endswith("RaiseError('intake.consents is closed for repairs')")

        # wrong names: one line naming what exists, exit 2, no traceback
        code, out, err = await relais(settings, tmp_path, "show", "intak", handle)
        assert (code, out) == (2, "")
        assert err == ("relais: no consumer 'intak'; the consumers are: intake, consent, "
                       "referral, notify\n")
        code, out, err = await relais(settings, tmp_path, "replay", "intake", "9:99")
        assert (code, out) == (2, "")
        assert err == (f"relais: no dead letter 9:99 in relais.dlq.intake; intake's: "
                       f"{handle}\n")

        assert await db.fetchval("SELECT count(*) FROM intake.consents WHERE person_id = $1",
                                 intake["person_id"]) == 0
        await db.execute(REPAIR)
        code, out, err = await relais(settings, tmp_path, "replay", "intake", handle)
        assert code == 0, err
        assert out.splitlines()[0] == (f"replayed intake {handle}: event {event_id} "
                                       "(fr.relais.consent.granted.v1) back to relais.consent")

        async def applied() -> bool:
            return bool(await db.fetchval(
                "SELECT count(*) FROM intake.inbox WHERE consumer = 'intake' AND event_id = $1",
                event_id))

        await wait_until(applied, 60, "the replayed consent.granted applied")
        assert await db.fetchval("SELECT count(*) FROM intake.consents WHERE person_id = $1",
                                 intake["person_id"]) == 1

        code, out, err = await relais(settings, tmp_path, "list", "--consumer", "intake")
        assert code == 0, err
        assert " handled " in out.splitlines()[1]
        code, out, err = await relais(settings, tmp_path, "replay", "intake", handle)
        assert (code, out) == (1, "")
        assert err == (f"relais: intake {handle} not replayed: event {event_id} is already "
                       "handled (intake.inbox has it); --force to replay it anyway\n")
        code, out, err = await relais(settings, tmp_path, "replay", "intake", "--all")
        assert (code, out) == (0, "nothing to replay: intake has no unhandled dead letter\n")

        # forced: every consumer of relais.consent gets it again and its inbox skips it
        code, out, err = await relais(settings, tmp_path, "replay", "intake", handle, "--force")
        assert code == 0, err
        await asyncio.sleep(2 * settings.poll_interval + 1)
        assert await db.fetchval("SELECT count(*) FROM intake.consents WHERE person_id = $1",
                                 intake["person_id"]) == 1
        assert len(smtp_server.messages) == 1, "the referral consumer applied it again"
        assert len(await transport.read_topic(dead_letter_topic("intake"))) == 1
        assert await groups(settings, db) == {"intake", "consent", "referral", "notify"}, \
            "reading the dead letters joined a consumer group"
    finally:
        await db.close()


async def groups(settings: Settings, db: asyncpg.Connection) -> set[str]:
    """The consumer groups of the transport (of this test's namespace on Kafka)."""
    if settings.transport == "postgres":
        return {r["group_id"] for r in await db.fetch(
            "SELECT DISTINCT group_id FROM relais_bus.group_offsets")}
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        listed = await admin.list_consumer_groups()
    finally:
        await admin.close()
    return {g[0].removeprefix(settings.kafka_namespace) for g in listed
            if g[0].startswith(settings.kafka_namespace)}
