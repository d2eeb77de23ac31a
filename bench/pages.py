"""Server time of every page of the console at the demo's size (issue #10: every page under
200 ms), against GET /healthz and a static file of the same server in the same invocation.

    .venv/bin/python -m bench.pages --rounds 3 --requests 50

`relais up` (all services, postgres transport, the demo directory) runs as its own process on
a fresh database (embedded PostgreSQL, or DATABASE_URL's server). The territory is recorded
through the API as the partners would: the outreach team's intakes (a few people met twice),
consents handing most of them off, the partners' answers (received, accepted, rejected,
started, completed), dossiers read, consents withdrawn, the commission's sessions with their
agenda and decisions. The one shortcut: time cannot pass in a benchmark, so some unanswered
referrals get a deadline in the past (a direct UPDATE of `due_at`) to fill the
coordination's overdue list. One personal account per role is created in the auth store
(as the other benchmarks create API clients) and signs in through POST /connexion.

Once the pipeline has settled (events relayed and consumed, emails sent to an SMTP sink,
the consent trail's last checkpoint signed), each round runs in a process of its own: per
page, a fresh HTTP session with the person's session cookie, two warm-up GETs, then
`--requests` sequential timed GETs. On loopback, with one request at a time, the client's
latency is the server's time plus a fraction of a millisecond."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiosmtpd.controller import Controller

from bench import database
from bench.intake_throughput import wait_ready
from deploy.kafka.broker import free_port
from services.auth import accounts
from services.auth import domain as auth_domain
from services.auth import store as auth_store
from services.runtime import db

BUDGET_MS = 200.0
PASSWORD = "banc d'essai des pages"
TEAM = "equipe-aller-vers"
COMMISSION = "commission-remobilisation"
PARTNERS = ("mission-locale", "france-travail", "cap-emploi", "ccas", "plie", "asso-boussole",
            "asso-terrain-commun")
ACCOUNTS = {  # who: (email, name, organisation, role); the organisation kinds allow the role
    "ml": ("camille@mission-locale.example.org", "Camille Martin", "mission-locale",
           accounts.Role.counsellor),
    "team": ("nadia@camion.example.org", "Nadia Benali", TEAM, accounts.Role.counsellor),
    "coord": ("claire@coordination.example.org", "Claire Dubois", "coordination",
              accounts.Role.coordinator),
    "funder": ("alex@region.example.org", "Alex Bernard", "coordination", accounts.Role.funder),
    "auditor": ("dominique@dpo.example.org", "Dominique Petit", "coordination",
                accounts.Role.auditor),
}
PLACES = (  # (permanence, site, channel, weight)
    ("camion-etouvie-mardi", None, "mobile_permanence", 30),
    ("camion-amiens-nord-mercredi", None, "mobile_permanence", 25),
    ("camion-pierre-rollin-jeudi", None, "mobile_permanence", 12),
    ("camion-marcel-paul-vendredi", None, "mobile_permanence", 12),
    ("permanence-centre-social-nord", None, "fixed_permanence", 12),
    (None, "en-ligne", "online", 6),
    (None, "qpv-etouvie", "phone", 3),
)
NEEDS = (["employment"], ["employment", "training"], ["housing"], ["employment", "mobility"],
         ["training"], ["rights", "administrative_steps"], ["digital_skills"], ["health"],
         ["sport_leisure"], ["administrative_steps", "digital_skills"], ["rights"])
COMPLEX = (["employment", "housing", "health"], ["training", "rights", "mobility"],
           ["housing", "health", "administrative_steps", "rights"])
AGES = ("16_17", "18_25", "18_25", "18_25", "26_29", "30_49", "30_49", "50_plus", None)
GENDERS = ("female", "male", "female", "male", "other", None)
COMMUNES = ("80021", "80021", "80021", "80479", "80620")
FIRST_NAMES = ("Léa", "Yanis", "Inès", "Mamadou", "Chloé", "Kevin", "Sarah", "Rayan")
REASONS = ("no_place", "not_reachable", "not_eligible", "did_not_come", "not_interested",
           "followed_elsewhere", "other")
OUTCOMES = ("registered_mission_locale", "training", "job", "contrat_engagement_jeune",
            "stopped", "registered_france_travail")
SCOPES = {"team": ["intake:write", "intake:read", "consent:write", "consent:read",
                   "referral:read", "referral:write"],
          "partner": ["referral:read", "referral:write", "consent:read"]}


def say(text: str) -> None:
    print(text, flush=True)


# --- the territory, recorded through the API ------------------------------------------------

@dataclass
class Api:
    """The running Relais, called as each organisation's API client."""

    base: str
    http: aiohttp.ClientSession
    tokens: dict[str, str] = field(default_factory=dict)
    errors: int = 0

    async def call(self, org: str, method: str, path: str, body: Any = None, *,
                   ok: Iterable[int] = (200, 201)) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[org]}"}
        if method == "POST":
            headers["Idempotency-Key"] = uuid.uuid4().hex
        async with self.http.request(method, self.base + path, json=body,
                                     headers=headers) as response:
            answer = await response.json(content_type=None)
            if response.status not in ok:
                self.errors += 1
                if self.errors <= 5:
                    say(f"  ! {method} {path} as {org}: {response.status} {answer}")
                return None
            return answer


async def gather(items: list[Any], work: Callable[[Any], Awaitable[Any]], what: str,
                 concurrency: int = 8) -> list[Any]:
    """`work` on every item, `concurrency` at a time, with a progress line now and then."""
    limit = asyncio.Semaphore(concurrency)
    done = 0
    every = max(50, len(items) // 5)

    async def one(item: Any) -> Any:
        nonlocal done
        async with limit:
            result = await work(item)
        done += 1
        if done % every == 0 or done == len(items):
            say(f"  {what}: {done}/{len(items)}")
        return result

    return list(await asyncio.gather(*(one(i) for i in items)))


async def referrals(api: Api, org: str, role: str = "sender",
                    status: str | None = None) -> list[dict[str, Any]]:
    """Every referral the organisation sent (or received), through the API's pages."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = f"/v1/referrals?role={role}&limit=200" + (f"&status={status}" if status else "")
        page = await api.call(org, "GET", query + (f"&cursor={cursor}" if cursor else ""))
        if page is None:
            return found
        found.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def until(check: Callable[[], Awaitable[tuple[bool, str]]], what: str,
                timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        done, state = await check()
        if done:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {state}")
        if state != last:
            say(f"  waiting for {what}: {state}")
            last = state
        await asyncio.sleep(1)


def intake(rng: random.Random, now: datetime, n: int, complex_share: float) -> dict[str, Any]:
    permanence, site, channel, _ = rng.choices(PLACES, weights=[p[3] for p in PLACES])[0]
    needs = rng.choice(COMPLEX) if rng.random() < complex_share else rng.choice(NEEDS)
    item: dict[str, Any] = {
        "channel": channel, "needs": needs, "commune": rng.choice(COMMUNES),
        "contacted_at": (now - timedelta(days=rng.uniform(1, 360))).isoformat()}
    item |= {"permanence": permanence} if permanence else {"site": site}
    if age := rng.choice(AGES):
        item["age_bracket"] = age
    if gender := rng.choice(GENDERS):
        item["gender"] = gender
    if n % 2 == 0:  # half of the people give a first name and a phone number
        item["identity"] = {"first_name": rng.choice(FIRST_NAMES),
                            "phone": f"06 12 34 {n // 100 % 100:02d} {n % 100:02d}"}
    return item


@dataclass
class Territory:
    """What the pages need to be opened with: a referral, a session, a person."""

    received: str = ""  # a referral mission-locale received, with a long history
    sent: str = ""  # a referral the outreach team sent
    session: str = ""  # the commission's last session
    person: str = ""  # a person with consents, a withdrawal and dossier reads
    counts: dict[str, int] = field(default_factory=dict)


async def seed(api: Api, args: argparse.Namespace, url: str) -> Territory:
    rng = random.Random(args.seed)
    now = datetime.now(UTC)
    territory = Territory()
    started = time.monotonic()

    say("places declared by the partners (PUT /v1/partners/{id}/capacity)")
    for n, partner in enumerate(PARTNERS):
        await api.call(partner, "PUT", f"/v1/partners/{partner}/capacity",
                       {"open_places": 3 + 4 * n, "waiting_list": n % 2 == 0})

    say(f"{args.intakes} intakes by {TEAM} (POST /v1/intakes:batch), "
        f"{args.returning} of them people met before")
    first = args.intakes - args.returning
    items = [intake(rng, now, n, args.complex) for n in range(first)]
    recorded: list[dict[str, Any]] = []
    for start in range(0, first, 100):
        batch = await api.call(TEAM, "POST", "/v1/intakes:batch", {"items": [
            {"idempotency_key": str(uuid.uuid4()), "intake": i}
            for i in items[start:start + 100]]})
        recorded.extend(r["intake"] for r in (batch or {"results": []})["results"]
                        if r.get("intake"))
        say(f"  intakes: {len(recorded)}/{first}")

    async def again(person: dict[str, Any]) -> Any:
        item = intake(rng, now, 1, 0) | {"person_id": person["person_id"],
                                         "contacted_at": now.isoformat()}
        return await api.call(TEAM, "POST", "/v1/intakes", item)

    recorded += [r for r in await gather(rng.sample(recorded, args.returning), again,
                                         "returning") if r]

    async def routed() -> tuple[bool, str]:
        found = await referrals(api, TEAM)
        return len(found) >= len(recorded), f"{len(found)}/{len(recorded)} referrals routed"

    await until(routed, "the referral service to route every intake")
    sent = await referrals(api, TEAM)
    identified = {i["id"] for i in recorded if i["has_identity"]}

    consenting = [r for r in sent if rng.random() < args.consented]
    say(f"consents for {len(consenting)} of {len(sent)} referrals (POST /v1/consents)")
    consents: dict[str, dict[str, Any]] = {}

    async def consent(referral: dict[str, Any]) -> None:
        categories = ["needs", "situation"] + (
            ["identity", "contact"] if referral["intake_id"] in identified else [])
        answer = await api.call(TEAM, "POST", "/v1/consents", {
            "person_id": referral["person_id"], "purposes": [referral["purpose"]],
            "recipients": [referral["target"]], "categories": categories,
            "notice_version": "2026-01", "method": "signed_screen",
            "captured_by": "Nadia Benali"})
        if answer is not None:
            consents[referral["id"]] = answer

    await gather(consenting, consent, "consents")

    async def handed_off() -> tuple[bool, str]:
        waiting = await referrals(api, TEAM, status="awaiting_consent")
        target = len(sent) - len(consents)
        return len(waiting) <= target, f"{len(waiting) - target} consents not applied yet"

    await until(handed_off, "the consent gate to hand them off")

    to_partners = [r for r in await referrals(api, TEAM, status="requested")
                   if r["purpose"] == "referral_partner"]
    rng.shuffle(to_partners)
    say(f"the partners answer {len(to_partners)} referrals (POST /v1/referrals/{{id}}/...)")
    plans = (  # (share, actions)
        (0.20, ()), (0.15, ("receive",)), (0.15, ("receive", "accept")),
        (0.15, ("reject",)), (0.15, ("accept", "start")),
        (0.20, ("receive", "accept", "start", "complete")))
    planned: list[tuple[dict[str, Any], tuple[str, ...]]] = []
    start = 0
    for share, actions in plans:
        count = round(share * len(to_partners))
        planned += [(r, actions) for r in to_partners[start:start + count]]
        start += count
    planned += [(r, plans[-1][1]) for r in to_partners[start:]]

    async def answer(plan: tuple[dict[str, Any], tuple[str, ...]]) -> None:
        referral, actions = plan
        pick = int(referral["id"][:8], 16)
        for action in actions:
            body: dict[str, Any] = {}
            if action == "reject":
                reason = REASONS[pick % len(REASONS)]
                body = {"reason": reason} | (
                    {"text": "Déjà suivie par une autre structure."} if reason == "other"
                    else {})
            elif action == "start":
                body = {"milestone": "first_appointment"}
            elif action == "complete":
                body = {"outcome": OUTCOMES[pick % len(OUTCOMES)]}
            elif action == "accept":
                body = {"text": "Premier rendez-vous proposé mardi."}
            await api.call(referral["target"], "POST",
                           f"/v1/referrals/{referral['id']}/{action}", body)

    await gather(planned, answer, "answers")
    unanswered = [r["id"] for r, actions in planned if not actions]

    readable = [r for r, actions in planned if actions and actions[-1] in ("accept", "start")
                and r["intake_id"] in identified][:args.reads]
    say(f"{len(readable)} dossiers read by their recipients (GET /v1/referrals/{{id}}/dossier)")
    await gather(readable, lambda r: api.call(r["target"], "GET",
                                              f"/v1/referrals/{r['id']}/dossier"), "reads")

    withdrawn = [r for r in readable if r["id"] in consents][:args.withdrawals]
    say(f"{len(withdrawn)} consents withdrawn (POST /v1/consents/{{id}}/withdraw)")
    channels = ("phone", "in_person", "email", "letter", "online")
    await gather(list(enumerate(withdrawn)), lambda pair: api.call(
        TEAM, "POST", f"/v1/consents/{consents[pair[1]['id']]['id']}/withdraw",
        {"requested_by": "person", "channel": channels[pair[0] % len(channels)]}),
        "withdrawals")

    say(f"the commission's {args.sessions} sessions (POST /v1/commission/sessions)")
    agenda = sorted(r["id"] for r in await referrals(api, COMMISSION, "recipient")
                    if r["status"] == "requested")
    chunk = -(-len(agenda) // max(args.sessions, 1))
    members = ["mission-locale", "france-travail", "ccas", TEAM]
    decisions: tuple[tuple[str, str | None], ...] = (
        ("refer_partner", "mission-locale"), ("keep_with_outreach", None),
                 ("refer_partner", "ccas"), ("close", None), ("refer_partner", "plie"))
    for n in range(args.sessions):
        ids = agenda[n * chunk:(n + 1) * chunk]
        held_on = date.today() - timedelta(days=14 * (args.sessions - 1 - n))
        session = await api.call(COMMISSION, "POST", "/v1/commission/sessions", {
            "commission": COMMISSION, "held_on": held_on.isoformat(), "members": members,
            "referral_ids": ids})
        if session is None:
            continue
        territory.session = session["id"]
        last = n == args.sessions - 1
        decided = ids[:len(ids) // 2] if last else ids  # the last one is under way
        for k, referral_id in enumerate(decided):
            decision, to = decisions[k % len(decisions)]
            await api.call(COMMISSION, "POST",
                           f"/v1/commission/sessions/{session['id']}/decisions", {
                               "referral_id": referral_id, "decision": decision,
                               "partner": to,
                               "text": "Décision de la commission, telle qu'au compte rendu."})
        say(f"  session of {held_on}: {len(ids)} on the agenda, {len(decided)} decided")

    late = unanswered[:len(unanswered) // 2]
    say(f"{len(late)} unanswered referrals past their deadline (UPDATE referral.referrals "
        "SET due_at: the one direct write, time cannot pass in a benchmark)")
    conn = await db.connect(url)
    try:
        await conn.execute("UPDATE referral.referrals SET due_at = now() - interval '2 days'"
                           " WHERE id = ANY($1::uuid[])", late)
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM referral.intakes) AS intakes,"
            " (SELECT count(*) FROM referral.referrals) AS referrals,"
            " (SELECT count(*) FROM referral.referrals WHERE target = 'mission-locale'"
            "  AND consent_id IS NOT NULL) AS ml_inbox,"
            " (SELECT count(*) FROM referral.referral_history) AS history,"
            " (SELECT count(*) FROM referral.commission_agenda) AS agenda")
        territory.counts = dict(counts)
        received = await conn.fetchrow(
            "SELECT r.id, r.person_id FROM referral.referrals r"
            " JOIN referral.referral_history h ON h.referral_id = r.id"
            " WHERE r.target = 'mission-locale' AND r.consent_id IS NOT NULL"
            " GROUP BY r.id ORDER BY count(*) DESC, r.id LIMIT 1")
        territory.received = str(received["id"])
    finally:
        await conn.close()
    territory.sent = territory.received
    audited = withdrawn[0] if withdrawn else readable[0] if readable else sent[0]
    territory.person = audited["person_id"]
    say(f"seeded in {time.monotonic() - started:.0f} s ({api.errors} API errors): "
        + ", ".join(f"{k} {v}" for k, v in territory.counts.items()))
    return territory


async def settled(url: str, timeout: float) -> None:
    """Waits until Relais is idle: every outbox relayed, every email sent, the consent
    trail's last checkpoint signed, and nothing written for two polls in a row."""
    conn = await db.connect(url)
    previous: tuple[Any, ...] = ()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            unpublished = 0
            for schema in ("intake", "consent", "referral", "notify"):
                with contextlib.suppress(asyncpg.UndefinedTableError):
                    unpublished += await conn.fetchval(
                        f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL")
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM notify.notifications WHERE status = 'pending'"
                "  AND channel <> 'inbox') AS pending,"
                " (SELECT count(*) FROM consent.trail) AS trail,"
                " (SELECT coalesce(max(size), 0) FROM consent.checkpoints) AS signed,"
                " (SELECT count(*) FROM notify.notifications) AS notifications,"
                " (SELECT count(*) FROM referral.referral_history) AS history")
            state = (unpublished, *row.values())
            if unpublished == 0 and row["pending"] == 0 and row["signed"] == row["trail"] \
                    and state == previous:
                return
            say(f"  settling: {unpublished} events to relay, {row['pending']} emails to send, "
                f"trail {row['trail']} entries, {row['signed']} signed")
            previous = state
            await asyncio.sleep(2)
        say("  ! not settled: measuring anyway")
    finally:
        await conn.close()


# --- accounts and sign-in ---------------------------------------------------------------------

async def prepare(admin_url: str) -> tuple[str, dict[str, str]]:
    """A fresh database with the API clients and the personal accounts (password set)."""
    url = await database.new_database(admin_url, f"bench_pages_{uuid.uuid4().hex[:6]}")
    secrets: dict[str, str] = {}
    password = accounts.hash_password(PASSWORD)
    conn = await db.connect(url)
    try:
        await db.migrate(conn, "auth", "services.runtime")
        await db.migrate(conn, "auth", "services.auth")
        for org in (TEAM, COMMISSION, *PARTNERS):
            secrets[org] = auth_domain.new_secret()
            await auth_store.insert_client(
                conn, f"bench-{org}", auth_domain.hash_secret(secrets[org]), org, "bench",
                SCOPES["team" if org == TEAM else "partner"])
        for email, name, org, role in ACCOUNTS.values():
            user_id = uuid.uuid4()
            _token, digest = accounts.new_token()
            async with conn.transaction():
                await auth_store.insert_user(conn, user_id, email, name, org, role)
                await auth_store.insert_invitation(conn, digest, user_id,
                                                   datetime.now(UTC) + timedelta(days=1))
                await auth_store.accept_invitation(conn, digest, user_id, password)
    finally:
        await conn.close()
    return url, secrets


async def token(http: aiohttp.ClientSession, base: str, org: str, secret: str) -> str:
    async with http.post(f"{base}/oauth/token", data={
            "grant_type": "client_credentials", "client_id": f"bench-{org}",
            "client_secret": secret}) as response:
        issued: str = (await response.json())["access_token"]
        return issued


async def sign_in(base: str, email: str) -> str:
    """The session cookie of a person signed in at POST /connexion, as from the form."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{base}/connexion", data={"email": email, "password": PASSWORD, "suite": "/"},
            allow_redirects=False) as response:
        cookie = response.cookies.get("relais_session")
        if response.status != 303 or cookie is None:
            raise RuntimeError(f"sign-in of {email}: {response.status}")
        return cookie.value


# --- the measurement ------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    name: str
    who: str  # an account of ACCOUNTS, or "" (no session)
    path: str


def targets(territory: Territory) -> list[Target]:
    """Every page of the console (each MENU entry, as the roles that open it), and the
    baselines first."""
    today = date.today()
    half = (today - timedelta(days=182)).isoformat()
    return [
        Target("baseline: GET /healthz", "", "/healthz"),
        Target("baseline: static relais.css", "", "/static/relais/relais.css"),
        Target("sign-in page", "", "/connexion"),
        Target("inbox (mission-locale)", "ml", "/orientations"),
        Target("inbox, status filter", "ml", "/orientations?statut=requested"),
        Target("a referral received", "ml", f"/orientations/{territory.received}"),
        Target("sent (outreach team)", "team", "/orientations/envoyees"),
        Target("a referral sent", "team", f"/orientations/{territory.sent}"),
        Target("commission", "ml", "/commission"),
        Target("a commission session", "ml", f"/commission/seances/{territory.session}"),
        Target("coordination", "coord", "/coordination"),
        Target("directory (coordination)", "coord", "/coordination/annuaire"),
        Target("directory (counsellor)", "ml", "/coordination/annuaire"),
        Target("notification settings", "coord",
               "/coordination/organisations/mission-locale/notifications"),
        Target("statistics (last year)", "funder", "/statistiques"),
        Target("statistics, filtered", "funder",
               f"/statistiques?du={half}&au={today.isoformat()}&lieu=qpv-etouvie"),
        Target("statistics CSV", "funder", "/statistiques.csv"),
        Target("audit", "auditor", "/audit"),
        Target("audit of a person", "auditor", f"/audit?personne={territory.person}"),
        Target("account, second factor", "ml", "/compte/double-authentification"),
        Target("on the field (outreach team)", "team", "/terrain"),
        Target("offline page (outreach team)", "team", "/terrain/hors-ligne"),
        Target("relays of the network", "coord", "/coordination/relais"),
    ]


async def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One round, in its own process: per target, a fresh session, 2 warm-up GETs, then
    `requests` sequential timed GETs. Returns the latencies (s), status and size of each."""
    results: dict[str, Any] = {}
    for target in spec["targets"]:
        headers = {"Cookie": f"relais_session={target['cookie']}"} if target["cookie"] else {}
        latencies: list[float] = []
        status = size = 0
        async with aiohttp.ClientSession(headers=headers) as http:
            for n in range(spec["requests"] + 2):
                started = time.perf_counter()
                async with http.get(spec["base"] + target["path"],
                                    allow_redirects=False) as response:
                    body = await response.read()
                elapsed = time.perf_counter() - started
                status, size = response.status, len(body)
                if n >= 2:
                    latencies.append(elapsed)
        results[target["name"]] = {"latencies": latencies, "status": status, "size": size}
    return results


def run_round(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.pages", "--measure"], check=True,
                         input=json.dumps(spec), capture_output=True, text=True).stdout
    measured: dict[str, Any] = json.loads(out)
    return measured


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(rounds: list[dict[str, Any]], chosen: list[Target]) -> None:
    base_name = chosen[0].name
    base = statistics.median(statistics.median(r[base_name]["latencies"]) for r in rounds)
    say(f"\n{'page':34s} {'who':8s} {'median':>8s} {'p95':>8s} {'max':>8s} {'ratio':>7s} "
        f"{'KB':>6s}  budget {BUDGET_MS:.0f} ms")
    missed: list[str] = []
    for target in chosen:
        seen = [r[target.name] for r in rounds]
        status = seen[-1]["status"]
        if status != 200:
            say(f"{target.name:34s} {target.who:8s} answered {status}: not measured "
                f"({target.path})")
            continue
        latencies = [x for r in seen for x in r["latencies"]]
        median = statistics.median(statistics.median(r["latencies"]) for r in seen)
        p95, top = percentile(latencies, 0.95), max(latencies)
        verdict = "PASS" if median * 1000 <= BUDGET_MS else "FAIL"
        if verdict == "FAIL":
            missed.append(target.name)
        note = " (p95 over)" if verdict == "PASS" and p95 * 1000 > BUDGET_MS else ""
        say(f"{target.name:34s} {target.who:8s} {median * 1000:6.1f}ms {p95 * 1000:6.1f}ms "
            f"{top * 1000:6.1f}ms {median / base:7.1f} {seen[-1]['size'] / 1024:6.1f}  "
            f"{verdict}{note}")
    say(f"\nmedian of the round medians; ratio: against {base_name} "
        f"({base * 1000:.2f} ms); PASS: median under {BUDGET_MS:.0f} ms")
    say("pages over the budget: " + (", ".join(missed) if missed else "none"))


class Sink:
    """An SMTP server that accepts every email (notify's, so that it has nothing to retry)."""

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:
        return "250 OK"


async def run(args: argparse.Namespace, admin_url: str, work: Path) -> None:
    url, secrets = await prepare(admin_url)
    smtp_port, port = free_port(), free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    env = os.environ | {"RELAIS_DATA_DIR": str(work), "RELAIS_LOG_LEVEL": "WARNING",
                        "RELAIS_RATE_LIMIT_PER_SECOND": "1000000",
                        "RELAIS_SMTP_PORT": str(smtp_port), "RELAIS_TOKEN_TTL": "3600"}
    base = f"http://127.0.0.1:{port}"
    with (work / "relais.log").open("wb") as log:
        server = subprocess.Popen(  # noqa: ASYNC220 (started once, before any load)
            [sys.executable, "-m", "services.cli", "up", "--database", url, "--port",
             str(port)], env=env, stdout=log, stderr=log)
    try:
        await asyncio.to_thread(wait_ready, f"{base}/readyz", server)
        say(f"relais up (all services, postgres transport, demo directory) on {base}; "
            f"log: {work / 'relais.log'}")
        say(f"sizes: --intakes {args.intakes} (--returning {args.returning}), --consented "
            f"{args.consented:.0%}, --complex {args.complex:.0%} (to the commission), "
            f"--sessions {args.sessions}, --reads {args.reads}, --withdrawals "
            f"{args.withdrawals}; --rounds {args.rounds} x --requests {args.requests}")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as http:
            api = Api(base, http)
            for org, secret in secrets.items():
                api.tokens[org] = await token(http, base, org, secret)
            territory = await seed(api, args, url)
        say("waiting for Relais to settle")
        await settled(url, args.settle)
        cookies = {who: await sign_in(base, email) for who, (email, *_rest) in ACCOUNTS.items()}
        say("signed in through POST /connexion: "
            + ", ".join(f"{who} ({ACCOUNTS[who][3]}, {ACCOUNTS[who][2]})" for who in cookies))
        chosen = targets(territory)
        spec = {"base": base, "requests": args.requests, "targets": [
            {"name": t.name, "path": t.path, "cookie": cookies.get(t.who)} for t in chosen]}
        rounds = []
        for n in range(args.rounds):
            started = time.monotonic()
            rounds.append(await asyncio.to_thread(run_round, spec))
            say(f"round {n + 1}/{args.rounds}: {len(chosen)} pages x {args.requests} GETs "
                f"in {time.monotonic() - started:.0f} s")
        report(rounds, chosen)
    finally:
        server.terminate()
        server.wait(30)
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=50, help="timed GETs per page a round")
    parser.add_argument("--intakes", type=int, default=300, help="by the outreach team")
    parser.add_argument("--returning", type=int, default=20,
                        help="of the intakes, people met a second time")
    parser.add_argument("--consented", type=float, default=0.85,
                        help="share of the referrals a consent hands off")
    parser.add_argument("--complex", type=float, default=0.12,
                        help="share of the people with 3 needs or more (the commission's)")
    parser.add_argument("--sessions", type=int, default=3,
                        help="commission sessions sharing its referrals (the last half "
                             "decided)")
    parser.add_argument("--reads", type=int, default=30, help="dossiers read by partners")
    parser.add_argument("--withdrawals", type=int, default=10, help="consents withdrawn")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--settle", type=float, default=300,
                        help="seconds to wait at most for Relais to be idle")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # one round, in the process `run_round` started
        print(json.dumps(asyncio.run(measure(json.load(sys.stdin)))))
        return
    work = Path(tempfile.mkdtemp(prefix="relais-bench-"))
    with database.server(work) as admin_url:
        asyncio.run(run(args, admin_url, work))


if __name__ == "__main__":
    main()
