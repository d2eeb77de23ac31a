"""Settings, read from `RELAIS_*` environment variables (and the usual `DATABASE_URL`,
`KAFKA_BOOTSTRAP_SERVERS`)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError


def _items(value: Any) -> Any:
    """A list setting as a variable gives it: comma-separated (`127.0.0.0/8,10.0.0.0/8`), or a
    JSON list (`["127.0.0.0/8"]`); an empty value is an empty list."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not a JSON list ({exc.args[0]})") from exc
    return [item.strip() for item in text.split(",") if item.strip()]


def _object(value: Any) -> Any:
    """A mapping setting: a JSON object (`{"13002526500013": "mission-locale"}`)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value) if value.strip() else {}
    except ValueError as exc:
        raise ValueError(f"not a JSON object ({exc.args[0]})") from exc


def _networks(values: list[str]) -> list[str]:
    """Each one a network (`127.0.0.0/8`, `fd00::/8`), as written."""
    for value in values:
        try:
            ipaddress.ip_network(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network such as 127.0.0.0/8 ({exc})") from exc
    return values


Items = Annotated[list[str], NoDecode, BeforeValidator(_items)]
"""A list of words: comma-separated or a JSON list."""
Networks = Annotated[list[IPvAnyNetwork], NoDecode, BeforeValidator(_items)]
NetworkTexts = Annotated[list[str], NoDecode, BeforeValidator(_items), AfterValidator(_networks)]
Mapping = Annotated[dict[str, str], NoDecode, BeforeValidator(_object)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAIS_", extra="ignore", populate_by_name=True)

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_url: str | None = Field(
        default=None, description="Base URL the people reading messages reach Relais at."
    )
    data_dir: Path = Path(".relais")
    dsfr_dir: Path | None = Field(
        default=None, description="The DSFR's dist directory (the State's design system), "
        "served at /static/dsfr/; web/node_modules/@gouvfr/dsfr/dist of the source tree by "
        "default (`make install`).")
    directory_file: Path | None = Field(
        default=None, description="Directory YAML loaded at start; the demo territory if unset."
    )

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("RELAIS_DATABASE_URL", "DATABASE_URL")
    )
    db_pool_max: int = 20

    transport: Literal["postgres", "kafka"] = "postgres"
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", description="The event loop `relais up` runs on: uvloop (libuv, "
        "faster sockets) or Python's own asyncio loop.")
    workers: int = Field(
        default=1, ge=1, le=64, description="Processes `relais up` runs on the same port "
        "(SO_REUSEPORT), each an instance of the deployment: one per core given to Relais.")
    trace_statements: bool | None = Field(
        default=None, description="A span per SQL statement: by default only when traces are "
        "exported (OTEL_EXPORTER_OTLP_ENDPOINT); they cost about a tenth of a busy process's "
        "CPU.")
    trace_requests: bool | None = Field(
        default=None, description="The HTTP server instrumentation (a span per request with "
        "its attributes and metrics): by default only when traces are exported; otherwise a "
        "light span carries the caller's trace id into the logs and the events.")
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RELAIS_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    kafka_partitions: int = 4
    kafka_replication: int = Field(
        default=1, ge=1, description="Replicas of each topic Relais creates (3 on a cluster: "
        "with min.insync.replicas one less, an acknowledged event survives a lost broker).")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How Relais talks to the brokers: SASL_SSL with a "
        "managed or Strimzi cluster (a KafkaUser's SCRAM password over TLS).")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = Field(
        default=None, description="The SASL user (with SASL_PLAINTEXT or SASL_SSL).")
    kafka_sasl_password: str | None = None
    kafka_sasl_password_file: Path | None = Field(
        default=None, description="The SASL password from a file (a mounted Secret, such as "
        "the `password` key of a Strimzi KafkaUser's).")
    kafka_ca_file: Path | None = Field(
        default=None, description="CA certificates that sign the brokers' (SSL, SASL_SSL); "
        "the system's by default.")
    kafka_namespace: str = Field(
        default="", description="Prefix of topic and group names, to share one cluster."
    )
    kafka_session_timeout_ms: int = Field(
        default=6000, gt=0,
        description="How long the broker waits without a heartbeat before it gives a dead "
        "consumer's partitions to the rest of its group. 6000 is the lowest a broker accepts "
        "by default (its group.min.session.timeout.ms); aiokafka's own default is 10000.")
    kafka_heartbeat_interval_ms: int = Field(
        default=1500, gt=0,
        description="Milliseconds between a consumer's heartbeats; under a third of "
        "RELAIS_KAFKA_SESSION_TIMEOUT_MS. Also how soon the others notice a rebalance.")
    instance_id: str | None = Field(
        default=None,
        description="A stable name of this process that survives its restarts (e.g. a "
        "StatefulSet pod name), unique among the processes sharing a consumer group. When "
        "set, each consumer is a static member of its group (`group.instance.id` "
        "<instance>.<group>): restarted within the session timeout it gets its partitions back "
        "without a rebalance, and stopping it does not leave the group (its partitions wait "
        "for the session timeout unless it comes back). Unset: dynamic membership.")
    bus_database_url: str | None = Field(
        default=None, description="Database of the postgres transport; the main one by default."
    )
    bus_partitions: int = 4

    poll_interval: float = Field(default=1.0, description="Fallback polling when no NOTIFY came.")
    consumer_max_attempts: int = 5
    consumer_backoff: float = 0.2
    email_senders: int = Field(
        default=4, ge=1, le=32, description="SMTP sessions sending the notifications' emails "
        "side by side (each one email at a time).")
    consumer_lanes: int = Field(
        default=4, ge=1, description="Partitions a consumer processes side by side, each in "
        "order on a connection of its own (1: one partition at a time).")

    jwt_issuer: str | None = Field(
        default=None, description="Issuer of the access tokens; the base URL by default."
    )
    jwt_audience: str = "relais-api"
    jwks_url: str | None = Field(
        default=None,
        description="Trust this JWKS (an external identity provider, or Relais's own auth "
        "service in another process) instead of the auth service running in this process.",
    )
    jwt_algorithms: Items = Field(
        default=["EdDSA", "Ed25519"],
        description="The JWS algorithms an access token may be signed with: Relais's own "
        "sign with EdDSA (Ed25519); add RS256 or ES256 for an external identity provider.")
    jwt_org_claim: str = "org"
    jwt_types: Items = Field(
        default=["at+jwt", "application/at+jwt"],
        description="The `typ` an access token must carry (RFC 9068); add \"JWT\" only for an "
        "identity provider that does not type its access tokens.")
    token_ttl: int = 600
    revocation_url: str | None = Field(
        default=None,
        description="The auth service's list of revoked clients (its /oauth/revoked), when it "
        "runs in another process and RELAIS_JWKS_URL is set; else it is read in this process, "
        "or from the base URL.")
    revocation_refresh: float = Field(
        default=2.0, gt=0,
        description="Seconds between reads of the revoked clients: a revoked client's tokens "
        "are refused within about this time.")
    token_failures_per_client: int = Field(
        default=10, ge=1,
        description="Failed authentications a minute for one client id at the token endpoint "
        "before 429.")
    token_failures_per_address: int = Field(
        default=30, ge=1,
        description="Failed authentications a minute from one address at the token endpoint "
        "before 429.")
    trusted_proxies: Networks = Field(
        default_factory=list,
        description="Networks of the reverse proxies in front of Relais (e.g. 10.0.0.0/8): "
        "their X-Forwarded-For gives the client's address.")
    metrics_networks: Networks = Field(
        default_factory=lambda: [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128")],
        description="Networks GET /metrics answers (Prometheus's, in the cluster): a peer "
        "whose own address is in them, asking directly (no Forwarded, X-Forwarded-For or "
        "X-Real-IP header: a proxy relays someone else); 403 for anyone else. Loopback only "
        "by default (behind a load balancer that translates addresses without a header, "
        "everyone would come from a private one); empty: nobody.")

    oidc_issuer: str | None = Field(
        default=None, description="An OpenID Connect provider people sign in to the console "
        "with (its issuer, e.g. ProConnect's or a Keycloak realm's; https, or http on "
        "loopback only): authorization code with PKCE. Unset: local passwords only. See "
        "docs/oidc.md.")
    oidc_client_id: str | None = Field(default=None, description="Relais's client id at the "
                                       "OpenID provider.")
    oidc_client_secret: str | None = Field(default=None, description="Relais's client secret "
                                           "at the OpenID provider.")
    oidc_scopes: str = Field(
        default="openid email profile organisation",
        description="Scopes asked of the OpenID provider: openid, the email, and whatever gives "
        "the organisation claim (ProConnect: \"openid email siret\").")
    oidc_org_claim: str = Field(
        default="organisation", description="The claim (ID token or userinfo) that names the "
        "person's organisation (ProConnect: siret); it must be the organisation of their "
        "Relais account, directly or through RELAIS_OIDC_ORGANISATIONS.")
    oidc_organisations: Mapping = Field(
        default_factory=dict, description="What a value of the organisation claim stands for "
        "in the directory, e.g. {\"13002526500013\": \"mission-locale\"} for a SIRET; a value "
        "not listed must be the directory's id itself.")
    oidc_name: str = Field(
        default="", description="The provider's name on the sign-in button (\"ProConnect\" "
        "shows ProConnect's own button); \"le compte de votre structure\" if unset.")

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_down_retry: float = Field(
        default=30.0, gt=0, description="Seconds at most between two tries of an email while "
        "the SMTP server cannot be reached (down, refusing, hanging past its timeout): the "
        "server's fault, not the message's, so an outage of any length ends with every waiting "
        "email sent within this delay of the server's return (a message the server refuses "
        "backs off up to an hour).")
    smtp_timeout: float = Field(
        default=10.0, gt=0, description="Seconds the SMTP server has to answer the connection "
        "and each command: a server that accepts and then hangs costs each try this long, then "
        "the email waits its next try (RELAIS_SMTP_DOWN_RETRY) and the other channels go on.")
    smtp_from: str = "Relais <no-reply@relais.local>"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    offline_keep_hours: int = Field(
        default=72, ge=1, le=168, description="How long the outreach app keeps on a device a "
        "contact recorded without a network and not sent yet, before it drops it unsent.")
    sms_url: str | None = Field(
        default=None, description="An SMS gateway (HTTPS): Relais posts `{\"to\": "
        "\"+33612345678\", \"text\": \"...\"}` to it, with `RELAIS_SMS_TOKEN` as a bearer "
        "token, to send a person their receipt or card. Unset: no SMS.")
    sms_token: SecretStr | None = Field(default=None, description="The SMS gateway's token "
                                        "(never printed).")
    smtp_ca_file: Path | None = Field(
        default=None, description="CA certificates that sign the SMTP server's (STARTTLS); "
        "the system's by default.")

    webhook_allowed_networks: NetworkTexts = Field(
        default_factory=list, description="Private networks webhooks may reach anyway (e.g. "
        "127.0.0.0/8 in tests); public addresses only by default.")
    webhook_timeout: float = Field(default=10.0, gt=0)
    sse_max_per_client: int = Field(default=5, ge=1, description="Live inbox streams (SSE) "
                                    "a client may hold open at once; 429 beyond.")
    sse_max_per_org: int = Field(default=50, ge=1, description="Live inbox streams (SSE) an "
                                 "organisation's clients may hold open at once; 429 beyond.")

    master_key: str | None = Field(
        default=None, description="Base64 of 32 bytes; seals every person's key (the vault) "
        "and the private keys that sign tokens and the consent trail."
    )

    master_key_file: Path | None = Field(
        default=None, description="A file holding the master key, base64 (a mounted secret).")
    master_key_command: str | None = Field(
        default=None, description="A shell command that prints the master key, base64: how "
        "a KMS or a PKCS#11 token gives it (asked once per process).")

    previous_master_key: str | None = Field(
        default=None, description="During a rotation of the master key only: the key being "
        "replaced, base64. It still opens what it sealed; nothing new is sealed under it; "
        "`relais master-key rewrap` seals everything again under RELAIS_MASTER_KEY, then it "
        "can go.")
    previous_master_key_file: Path | None = Field(
        default=None, description="The previous master key from a file (during a rotation).")
    previous_master_key_command: str | None = Field(
        default=None, description="The previous master key from a command (during a "
        "rotation).")

    erasure_ledger: Path | None = Field(
        default=None, description="The erasure ledger: one line per erased person, kept out "
        "of the database and its backups, made again at start after a restore "
        "(`<data dir>/keys/erasures.log` if unset; keep it with the master key, on storage "
        "every intake process shares).")

    retention_interval: float = Field(
        default=86400.0, gt=0, description="Seconds between two runs of retention (the "
        "erasure of people past their organisations' retention periods), the first at start.")

    retention_access_log_days: int = Field(
        default=365, ge=180, le=365, description="Days the log of who read a person's data "
        "is kept (the CNIL: six months to a year); the consent trail is kept whole.")
    retention_notifications_days: int = Field(
        default=365, ge=30, le=3650, description="Days sent or failed notifications and "
        "their delivery attempts are kept.")
    bus_retention_days: int = Field(
        default=7, ge=1, le=3650, description="Days the postgres transport keeps an event "
        "that every consumer group has read (as Kafka's retention.ms): older ones are deleted "
        "every ten minutes; one a group has yet to read is kept whatever its age.")
    bus_dead_letter_retention_days: int = Field(
        default=30, ge=1, le=3650, description="Days the postgres transport keeps a dead letter "
        "(relais.dlq.*): the time on-call has to read it (`relais dlq`).")
    retention_idempotency_days: int = Field(
        default=30, ge=8, le=365, description="Days an idempotency key is remembered (more "
        "than a week: an offline device sends days later).")
    retention_inbox_days: int = Field(
        default=60, ge=8, le=7301, description="Days a consumer remembers an event it "
        "handled (its inbox row), to skip it if it comes again: more than an event can come "
        "again (RELAIS_BUS_RETENTION_DAYS and RELAIS_BUS_DEAD_LETTER_RETENTION_DAYS "
        "together; with Kafka, the topics' retention.ms and the dead letters' together).")

    checkpoint_interval: float = Field(
        default=10.0, gt=0, description="Seconds between signed checkpoints of the trail.")
    expiry_interval: float = Field(default=30.0, gt=0,
                                   description="Seconds between checks for expired consents.")
    routing_rules_file: Path | None = Field(
        default=None, description="Routing rules (YAML); services/referral/rules.yaml if unset.")
    chase_interval: float = Field(default=30.0, gt=0,
                                  description="Seconds between checks for due reminders.")
    intake_url: str | None = Field(
        default=None, description="Where the consent and referral services ask the intake "
        "service (as the caller) who met a person and read identities for dossiers; this same "
        "server's bound address when it runs the intake service, else the base URL. Never the "
        "request's Host.")
    referral_url: str | None = Field(
        default=None, description="Where the intake service's outreach pages ask the referral "
        "service (as the caller) what routing proposed for a contact; chosen as `intake_url` "
        "is.")
    consent_url: str | None = Field(
        default=None, description="Where the intake service's offline page asks the consent "
        "service (as the caller) for the current information notice; chosen as `intake_url` "
        "is.")
    notify_url: str | None = Field(
        default=None, description="Where the auth service asks the notify service whether a "
        "magic link's address still receives its organisation's referrals; chosen as "
        "`intake_url` is.")
    link_days: int = Field(default=14, ge=1, le=60, description="How long the magic link in "
                           "an email to a partner stays valid.")
    rate_limit_per_second: float = Field(default=100.0, gt=0)
    rate_limit_burst: int = Field(default=500, ge=1)

    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("kafka_heartbeat_interval_ms")
    @classmethod
    def _heartbeat_within_session(cls, value: int, info: ValidationInfo) -> int:
        session = info.data.get("kafka_session_timeout_ms")
        if session is not None and value * 3 >= session:
            raise ValueError(f"must be under a third of RELAIS_KAFKA_SESSION_TIMEOUT_MS "
                             f"({session} ms), so that a late heartbeat or two does not end "
                             "the session")
        return value

    @field_validator("instance_id")
    @classmethod
    def _instance_id_kafka_accepts(cls, value: str | None) -> str | None:
        """Empty is unset; else what Kafka accepts in a `group.instance.id` (letters, digits,
        `.`, `_`, `-`), leaving room for the group's name after it."""
        if value is None or not value.strip():
            return None
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,120}", value):
            raise ValueError("only letters, digits, '.', '_' and '-', at most 120 of them")
        return value

    @model_validator(mode="after")
    def _one_master_key_source(self) -> Settings:
        given = [name for name, value in (("RELAIS_MASTER_KEY", self.master_key),
                                          ("RELAIS_MASTER_KEY_FILE", self.master_key_file),
                                          ("RELAIS_MASTER_KEY_COMMAND",
                                           self.master_key_command)) if value]
        if len(given) > 1:
            raise ValueError(f"give the master key one way, not {len(given)}: "
                             f"{', '.join(given)}")
        previous = [name for name, value in (
            ("RELAIS_PREVIOUS_MASTER_KEY", self.previous_master_key),
            ("RELAIS_PREVIOUS_MASTER_KEY_FILE", self.previous_master_key_file),
            ("RELAIS_PREVIOUS_MASTER_KEY_COMMAND", self.previous_master_key_command))
            if value]
        if len(previous) > 1:
            raise ValueError(f"give the previous master key one way, not {len(previous)}: "
                             f"{', '.join(previous)}")
        return self

    @model_validator(mode="after")
    def _inbox_outlives_the_log(self) -> Settings:
        """An event comes again at most while the log keeps it and, dead-lettered by a
        consumer that read it last, while its dead letter is kept (`relais dlq replay`
        also refuses an older one)."""
        longest = self.bus_retention_days + self.bus_dead_letter_retention_days
        if self.retention_inbox_days <= longest:
            raise ValueError(
                f"RELAIS_RETENTION_INBOX_DAYS ({self.retention_inbox_days}) must be more than "
                f"an event can come again: RELAIS_BUS_RETENTION_DAYS and "
                f"RELAIS_BUS_DEAD_LETTER_RETENTION_DAYS together ({longest} days); an event "
                "replayed after its inbox row went would be applied twice")
        return self

    @model_validator(mode="after")
    def _sasl_has_a_user(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_"):
            if not self.kafka_sasl_username:
                raise ValueError(f"{self.kafka_security_protocol} needs "
                                 "RELAIS_KAFKA_SASL_USERNAME")
            if bool(self.kafka_sasl_password) == bool(self.kafka_sasl_password_file):
                raise ValueError("give the SASL password one way: RELAIS_KAFKA_SASL_PASSWORD "
                                 "or RELAIS_KAFKA_SASL_PASSWORD_FILE")
        return self

    @property
    def erasure_ledger_path(self) -> Path:
        return self.erasure_ledger or self.data_dir / "keys" / "erasures.log"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.http_host}:{self.http_port}"

    @property
    def issuer(self) -> str:
        return self.jwt_issuer or self.base_url


SECRETS = ("smtp_password", "oidc_client_secret", "master_key", "master_key_command",
           "previous_master_key", "previous_master_key_command", "sms_token",
           "kafka_sasl_password")
"""Settings never printed (`relais settings`): a password, a client secret, the master key."""
HIDDEN = "**********"


def shown(settings: Settings) -> dict[str, Any]:
    """The settings as `relais settings` prints them: every value, but the secrets hidden and
    the passwords of database URLs too (a support ticket may carry the output)."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for name in SECRETS:
        if data.get(name) is not None:
            data[name] = HIDDEN
    for name in ("database_url", "bus_database_url"):
        url = data.get(name)
        if url:
            parts = urlsplit(url)
            if parts.password:
                user = parts.username or ""
                host = parts.netloc.rpartition("@")[2]
                data[name] = urlunsplit(parts._replace(netloc=f"{user}:{HIDDEN}@{host}"))
    return data


class InvalidSettings(Exception):
    """Settings that cannot be used: one line per wrong variable, naming it."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def load() -> Settings:
    """The settings from the environment; InvalidSettings (one line per wrong variable,
    never its value, which may be a secret) when some are wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        raise InvalidSettings([_line(e["loc"], e["msg"])
                               for e in exc.errors(include_url=False)]) from exc
    except SettingsError as exc:  # a value no validator saw (a source could not parse it)
        raise InvalidSettings([str(exc)]) from exc


def _line(loc: tuple[int | str, ...], message: str) -> str:
    if not loc:  # a rule across several variables: the message names them
        return message.removeprefix("Value error, ")
    item = f" (item {loc[1] + 1})" if len(loc) > 1 and isinstance(loc[1], int) else ""
    return f"{variable(loc)}{item}: {message.removeprefix('Value error, ')}"


def variable(loc: tuple[int | str, ...]) -> str:
    """The environment variable a validation error's location stands for."""
    name = str(loc[0]) if loc else ""
    field = Settings.model_fields.get(name)
    if field is None:  # an alias (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS) is its own name
        return name.upper()
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        names = [str(choice) for choice in alias.choices]
        return next((n for n in names if n in os.environ), names[0])
    return f"RELAIS_{name.upper()}"
