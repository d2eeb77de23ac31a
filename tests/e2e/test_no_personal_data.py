"""Issue #14, point 5: no personal data where it does not belong. A person with distinctive
values (names, birth date, phone, email, a note) goes through the whole flow on both
transports: intake, consent to the Mission locale, referral handed off, emails taken by a real
SMTP server, a webhook to the partner's endpoint, the dossier read by the partner, the referral
accepted. Then each value, in every spelling it could take (case, accents, JSON escapes, the
phone's digits, the normalised name), is looked for in the logs at every level, on the bus
(the postgres transport's log or every record of the broker's topics, and every outbox), in
the emails, the webhooks, the spans, and a plain `pg_dump` of the whole database (where the
sealed columns are ciphertext, so neither the text nor its bytes in hex may show). Each search
first finds something that is there, so that none is vacuous."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import re
import subprocess
import sys
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

import pytest
import structlog
from aiokafka.admin import AIOKafkaAdminClient

from services.backup import pg_tool
from services.intake import names
from services.runtime.app import RUNTIME
from services.runtime.logging import get_logger
from services.runtime.settings import Settings
from services.runtime.transport import make_transport
from tests.conftest import SPANS, Mailbox, wait_until
from tests.e2e.conftest import Receiver, Tokens
from tests.e2e.test_notify import ALL, ML, setup_recipient
from tests.e2e.test_skeleton import Client, consent_body, intake_body, post, wait_for_referral
from tests.e2e.test_traces import otlp_receiver_gets

IDENTITY = {"first_name": "Zéphyrine", "last_name": "Quenouille-Barbeau",
            "birth_date": "2004-07-13", "phone": "06 98 76 54 32",
            "email": "zephyrine.q@example.org"}
NOTE = "Cherche un CAP ébénisterie"
CANARY = "Éloïse Canari-Témoin"
"""Logged on purpose, to show that the logs are captured and searched as the person's data
would be (it is not the person's)."""


def spellings(value: str) -> set[str]:
    """`value` as it could be written anywhere: as is, decomposed (NFD), without accents,
    and escaped as JSON writes it by default (`\\u00e9`)."""
    nfd = unicodedata.normalize("NFD", value)
    found = {value, nfd, "".join(c for c in nfd if not unicodedata.combining(c))}
    return found | {json.dumps(s)[1:-1] for s in found}


def needles_of(identity: dict[str, str], note: str) -> set[str]:
    """Every form in which the person's data must not appear (searched case-insensitively)."""
    first, last, phone = identity["first_name"], identity["last_name"], identity["phone"]
    digits = phone.replace(" ", "")
    year, month, day = identity["birth_date"].split("-")
    found = {identity["birth_date"], f"{day}/{month}/{year}", identity["email"],
             identity["email"].split("@")[0], phone, digits, digits[1:], phone[1:], first,
             last, note, *last.split("-"), *note.split(" ")[-1:], " ".join(note.split(" ")[:3])}
    found |= names.spellings(first, last)  # what a blind index would have kept in clear
    return {form for value in found for form in spellings(value)}


NEEDLES = needles_of(IDENTITY, NOTE)


def hits(haystack: str, needles: Iterable[str] = NEEDLES) -> list[str]:
    """The needles found in `haystack`, whatever the case, and with its `\\uXXXX` escapes
    read as well (the case of an escaped letter is in its digits)."""
    unescaped = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), haystack)
    folded = f"{haystack}\n{unescaped}".casefold()
    return sorted({n for n in needles if n.casefold() in folded})


def finds_all(haystack: str, *present: str) -> bool:
    """Whether the search finds each of `present` (what must be there for it to mean anything)."""
    return len(hits(haystack, present)) == len(set(present))


def hex_needles(needles: Iterable[str] = NEEDLES) -> set[str]:
    """The UTF-8 bytes of each needle (as written and folded) in hex, as pg_dump writes a
    bytea; and the SHA-256 of each normalised name (an index without a key)."""
    found = {form.encode().hex() for n in needles for form in (n, n.casefold())}
    return found | {hashlib.sha256(s.encode()).hexdigest()
                    for s in names.spellings(IDENTITY["first_name"], IDENTITY["last_name"])}


def text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "backslashreplace")


# --- the logs: every level, every logger ------------------------------------------------------


LAZY_LOGGER = type(structlog.get_logger())


def _uncache_loggers() -> None:
    """Module-level structlog loggers keep the configuration of their first use: forget it."""
    for module in list(sys.modules.values()):
        for value in list(vars(module).values()) if module is not None else []:
            if isinstance(value, LAZY_LOGGER):
                vars(value).pop("bind", None)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Relais's structlog lines (its own processors, JSON) at DEBUG, written here instead of
    stderr; the standard library's records (aiohttp, aiokafka, asyncpg...) are in caplog."""
    caplog.set_level(logging.DEBUG)
    saved = structlog.get_config()
    out = io.StringIO()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=out),
                        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
                        cache_logger_on_first_use=False)
    _uncache_loggers()
    try:
        yield out
    finally:
        structlog.configure(**saved)
        _uncache_loggers()


def log_text(out: io.StringIO, caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for line in out.getvalue().splitlines():
        with contextlib.suppress(ValueError):  # JSON escapes what is not ASCII: unescaped
            lines.append(json.dumps(json.loads(line), ensure_ascii=False))
        lines.append(line)
    for record in caplog.get_records("setup") + caplog.get_records("call"):
        lines.append(f"{record.name} {record.getMessage()} {record.exc_text or ''}")
    return "\n".join(lines)


# --- the bus ------------------------------------------------------------------------------------


def record_text(key: bytes | None, value: bytes | None, headers: Iterable[Any]) -> str:
    return " ".join([text(key), text(value), *(f"{n}={v!r}" if isinstance(v, str) else
                                               f"{n}={text(v)}" for n, v in headers)])


async def bus_text(client: Client, settings: Settings) -> tuple[str, str, set[str]]:
    """What the bus holds (the transport's log, or every record of every topic of this
    namespace on the broker) and, apart, every service's outbox; and the topics read."""
    assert settings.database_url
    pool = client.app[RUNTIME].pool
    if settings.transport == "kafka":
        assert settings.kafka_bootstrap_servers
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            topics = {t.removeprefix(settings.kafka_namespace)
                      for t in await admin.list_topics() if t.startswith(settings.kafka_namespace)}
        finally:
            await admin.close()
        transport = make_transport(settings, settings.database_url)
        bus = [record_text(r.key, r.value, r.headers)
               for topic in sorted(topics) for r in await transport.read_topic(topic)]
    else:
        rows = await pool.fetch("SELECT topic, key, value, headers::text AS h"
                                " FROM relais_bus.records")
        topics = {r["topic"] for r in rows}
        bus = [f"{r['topic']} {record_text(r['key'], r['value'], [])} {r['h']}" for r in rows]
    schemas = [r["s"] for r in await pool.fetch(
        "SELECT table_schema AS s FROM information_schema.tables WHERE table_name = 'outbox'")]
    assert {"intake", "consent", "referral", "notify"} <= set(schemas), schemas
    outboxes = [f"{schema} {r['topic']} {record_text(r['key'], r['value'], [])} {r['h']}"
                for schema in schemas for r in await pool.fetch(
                    f'SELECT topic, key, value, headers::text AS h FROM "{schema}".outbox')]
    return "\n".join(bus), "\n".join(outboxes), topics


# --- emails, spans, the database ----------------------------------------------------------------


def email_text(message: Message) -> str:
    """The whole message as sent, and again with its headers and parts decoded (an encoded
    word or a base64 body would hide a name from a search of the raw bytes)."""
    found = [text(message.as_bytes())]
    found += [str(make_header(decode_header(str(v)))) for v in message.values()]
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            found.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(found)


def spans_text() -> str:
    found = []
    for span in SPANS.get_finished_spans():
        found += [span.name, repr(dict(span.attributes or {})),
                  repr(dict(span.resource.attributes)), span.status.description or ""]
        found += [f"{e.name} {dict(e.attributes or {})!r}" for e in span.events]
        found += [repr(dict(link.attributes or {})) for link in span.links]
    return "\n".join(found)


async def dump(url: str) -> str:
    done = await asyncio.to_thread(subprocess.run, [
        pg_tool("pg_dump"), "--format=plain", "--no-owner", f"--dbname={url}"],
        capture_output=True, check=True)
    return done.stdout.decode()


# --- the test -----------------------------------------------------------------------------------


def test_the_searches_find_what_is_there() -> None:
    """The spellings the searches look for: a JSON-escaped, upper-case or accentless form of a
    value is found, and so are the phone's digits and the hex of a name's bytes."""
    assert hits('{"n": "Z\\u00c9PHYRINE"}') and hits('{"n": "Z\\u00e9phyrine"}')
    assert hits("ZEPHYRINE") and hits("tel:+33698765432") and hits("CAP EBENISTERIE")
    assert hits("x quenouillebarbeauzephyrine y")
    assert "5ac3a970687972696e65" in hex_needles()  # "Zéphyrine"
    assert not hits("Léa Martin, 06 12 34 56 78, lea.martin@example.org, 2006-04-02")


async def test_no_personal_data_outside_the_vault(
    logs: io.StringIO, caplog: pytest.LogCaptureFixture, client: Client, tokens: Tokens,
    settings: Settings, smtp_server: Mailbox, receiver: Receiver
) -> None:
    """`logs` first: set up before the app, whose loggers bound at start are captured too."""
    SPANS.clear()
    await setup_recipient(client, tokens, receiver)
    intake = await post(client, tokens, "/v1/intakes",
                        intake_body() | {"identity": IDENTITY, "note": NOTE})
    assert intake["has_identity"] and intake["has_note"]
    person_id = intake["person_id"]
    await post(client, tokens, "/v1/consents", consent_body(person_id) | {
        "categories": ["situation", "needs", "identity", "contact", "note"]})
    referral = await wait_for_referral(client, tokens, intake["id"], "requested")
    partner = tokens.headers(ML, ALL + " people:read")

    # the partner reads the dossier: the one place the person's data goes, under the consent
    response = await client.get(f"/v1/referrals/{referral['id']}/dossier", headers=partner)
    assert response.status == 200, await response.text()
    person = (await response.json())["person"]
    assert person["identity"]["first_name"] == "Zéphyrine" and person["notes"] == [NOTE]
    response = await client.post(f"/v1/referrals/{referral['id']}/accept", headers=partner,
                                 json={"text": "Premier rendez-vous proposé mardi."})
    assert response.status == 200, await response.text()

    # the notice of the new counsellor, the referral to the team box and the counsellor, the
    # answer to the sending team; the webhook; then every outbox published
    await smtp_server.wait_for(4)
    await wait_until(lambda: receiver.received, 30, "the webhook")
    pool = client.app[RUNTIME].pool

    async def settled() -> bool:
        pending = await pool.fetchval(
            "SELECT count(*) FROM notify.notifications WHERE status = 'pending'")
        unpublished = 0
        for schema in ("intake", "consent", "referral", "notify"):
            unpublished += await pool.fetchval(
                f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL")
        return bool(pending == 0 and unpublished == 0)

    await wait_until(settled, 60, "every notification sent and every event published")
    await asyncio.sleep(1.0)  # the consumers of the last events have done their work
    get_logger("relais.test").debug("canary", who=CANARY)

    # 1. the logs, at every level
    logged = log_text(logs, caplog)
    assert finds_all(logged, CANARY), "the logs are captured, and read unescaped"
    assert '"canary"' in logged and "/v1/intakes" in logged, "the flow's own logs are in"
    assert hits(logged) == [], "personal data in the logs"

    # 2. the bus and the outboxes (keys, headers, values)
    bus, outboxes, topics = await bus_text(client, settings)
    assert {"relais.intake", "relais.consent", "relais.referral",
            "relais.notification"} <= topics, topics
    assert finds_all(bus, person_id) and finds_all(outboxes, person_id), "the key is its id"
    assert hits(bus) == [], "personal data on the bus"
    assert hits(outboxes) == [], "personal data in an outbox"

    # 3. the emails, raw and decoded
    mails = [email_text(m) for m in smtp_server.messages]
    envelopes = repr(smtp_server.envelopes)
    about = [m for m in mails if finds_all(m, referral["id"][:8])]
    assert len(about) >= 3, "to the team box, to the counsellor, to the sending team"
    # quoted-printable in the raw message, soft line break included: found once decoded
    assert all(finds_all(m, "aucune donnée personnelle") for m in about)
    assert any(finds_all(m, "répondu à votre orientation") for m in about)
    for mail in mails:
        assert hits(mail) == [], f"personal data in an email: {mail[:2000]}"
    assert hits(envelopes) == []

    # 4. the webhooks, headers and bodies
    webhooks = "\n".join(f"{headers!r} {text(body)}" for headers, body in receiver.received)
    assert finds_all(webhooks, referral["id"], "webhook-signature")
    assert hits(webhooks) == [], "personal data in a webhook"

    # 5. the spans: names, attributes, events, links; and as the OTLP exporter sends them
    spans = spans_text()
    assert finds_all(spans, "/v1/intakes", "publish relais.intake")
    assert hits(spans) == [], "personal data in a span"
    exported = await otlp_receiver_gets(SPANS.get_finished_spans())
    wire = "\n".join(text(m.SerializeToString()) for m in exported)
    assert finds_all(wire, "publish relais.intake", "relais-intake")
    assert hits(wire) == [], "personal data in the spans exported"

    # 6. the whole database, as pg_dump writes it: only ciphertext where the data is
    assert settings.database_url
    plain = await dump(settings.database_url)
    sealed: bytes = await pool.fetchval("SELECT identity FROM intake.people WHERE person_id = $1",
                                        uuid.UUID(person_id))
    assert finds_all(plain, person_id, sealed.hex()), "the dump holds the person, sealed"
    if settings.transport == "postgres":
        assert "relais_bus.records" in plain
    assert hits(plain) == [], "personal data in the database outside the vault"
    folded = plain.casefold()
    assert [h for h in hex_needles() if h in folded] == [], "personal data's bytes in the dump"
