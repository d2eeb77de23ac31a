"""The Helm chart (deploy/kubernetes/relais) stays valid and says what Relais needs, checked
with real tools and no cluster (none is here): `helm lint`, `helm template` piped into
`kubeconform -strict` with the Kubernetes schemas and Strimzi's and CloudNativePG's CRDs
(`make tools` installs them, deploy/kubernetes/install-tools.sh), then the rendered objects
read against the services themselves and their AsyncAPI document."""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from services.cli import SERVICE_NAMES, migrate_command, service_specs
from services.runtime.app import create_app
from services.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/kubernetes/relais"
TOOLS = ROOT / "deploy/kubernetes/.tools"
HELM, KUBECONFORM = TOOLS / "bin/helm", TOOLS / "bin/kubeconform"
SCHEMAS = TOOLS / "schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json"
KUBERNETES = ["--kube-version", "1.34.4"]  # the version of the schemas (install-tools.sh)
EXTERNAL = ["-f", str(CHART / "values-external.yaml")]
NO_KAFKA_USERS = ["--set", "kafka.authentication=none"]
VARIANTS = {"operators": [], "external": EXTERNAL, "no-kafka-users": NO_KAFKA_USERS}
OPERATED = {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "Cluster", "ScheduledBackup"}
ASYNCAPI = json.loads((ROOT / "schemas/asyncapi.json").read_text())


def _tool(path: Path) -> str:
    assert path.is_file(), f"{path.name} is missing: `make tools` installs it"
    return str(path)


@cache
def rendered(variant: str) -> str:
    result = subprocess.run(
        [_tool(HELM), "template", "relais", str(CHART), "--namespace", "relais", *KUBERNETES,
         *VARIANTS[variant]], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def objects(variant: str) -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all(rendered(variant)) if o]


def of_kind(variant: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects(variant) if o["kind"] == kind}


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_finds_nothing(variant: str) -> None:
    result = subprocess.run([_tool(HELM), "lint", "--strict", str(CHART), *KUBERNETES,
                             *VARIANTS[variant]], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_object_is_valid_for_kubernetes_and_the_operators(variant: str) -> None:
    """Every object against its schema, strictly (an unknown field is an error); a kind
    without a schema is an error too."""
    result = subprocess.run(
        [_tool(KUBECONFORM), "-strict", "-summary", "-output", "json",
         "-schema-location", str(SCHEMAS)],
        input=rendered(variant), capture_output=True, text=True)
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["summary"]["invalid"] == 0 \
        and report["summary"]["errors"] == 0 and report["summary"]["skipped"] == 0, \
        json.dumps([r for r in report["resources"] if r["status"] != "statusValid"], indent=1)
    assert report["summary"]["valid"] == len(objects(variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_service_is_a_probed_sized_deployment_with_its_budget_and_autoscaler(
        variant: str) -> None:
    deployments = of_kind(variant, "Deployment")
    assert sorted(deployments) == sorted(f"relais-{name}" for name in SERVICE_NAMES)
    budgets, scalers = of_kind(variant, "PodDisruptionBudget"), \
        of_kind(variant, "HorizontalPodAutoscaler")
    for name in SERVICE_NAMES:
        deployment = deployments[f"relais-{name}"]
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["command"] == ["relais", "up", "--services", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), (name, bound)
        env = {e["name"]: e for e in container["env"]}
        assert env["RELAIS_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == \
            "metadata.name"
        assert "secretKeyRef" in env["RELAIS_DATABASE_URL"]["valueFrom"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/etc/relais/master-key" in mounts
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert budgets[f"relais-{name}"]["spec"]["selector"]["matchLabels"] == labels
        target = scalers[f"relais-{name}"]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", f"relais-{name}")
    settings = of_kind(variant, "ConfigMap")["relais-settings"]["data"]
    assert settings["RELAIS_TRANSPORT"] == "kafka"
    # The topics' retention, which the settings check against the inbox's (in days).
    assert (settings["RELAIS_BUS_RETENTION_DAYS"],
            settings["RELAIS_BUS_DEAD_LETTER_RETENTION_DAYS"]) == ("7", "30")
    assert settings["RELAIS_MASTER_KEY_FILE"].startswith("/etc/relais/master-key/")
    named = set(settings) | {e["name"] for d in deployments.values()
                             for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    known = set(Settings.model_fields)
    for variable in named:  # a misspelt setting would be ignored, silently
        if variable.startswith("RELAIS_"):
            assert variable.removeprefix("RELAIS_").lower() in known, variable


def test_the_migrations_run_as_a_job_before_each_upgrade() -> None:
    for variant, first in (("operators", "post-install"), ("external", "pre-install")):
        [job] = of_kind(variant, "Job").values()
        hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
        assert set(hooks) == {first, "pre-upgrade"}
        [container] = job["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["relais", "migrate"]


async def test_the_migrations_job_and_the_database_metrics_work_on_postgresql(
        database: str) -> None:
    """`relais migrate` (the Job's command) on a real, empty PostgreSQL, twice (the second
    run applies nothing); then the chart's custom queries for CloudNativePG's exporter
    (outbox age, pending notifications) run on the schemas it made and give the columns the
    ConfigMap declares."""
    settings = Settings.model_validate({"database_url": database})
    assert await migrate_command(settings) == 0
    assert await migrate_command(settings) == 0
    [config] = [o for o in objects("operators") if o["kind"] == "ConfigMap"
                and o["metadata"]["name"].endswith("-relais-metrics")]
    queries = yaml.safe_load(config["data"]["queries.yaml"])
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("INSERT INTO referral.outbox (topic, value, headers, created_at) "
                           "VALUES ('relais.referral', 'x', '{}', now() - interval '90 s')")
        for name, query in queries.items():
            rows = await conn.fetch(query["query"])
            declared = {next(iter(metric)) for metric in query["metrics"]}
            assert all(set(row.keys()) == declared for row in rows), name
        rows = await conn.fetch(queries["relais_outbox"]["query"])
        outbox = {row["service"]: row for row in rows}
        assert set(outbox) == set(SERVICE_NAMES)
        assert outbox["referral"]["unpublished"] == 1 and outbox["referral"]["oldest_seconds"] >= 90
        assert outbox["intake"]["unpublished"] == 0
    finally:
        await conn.close()


def _asyncapi_services() -> dict[str, dict[str, set[str]]]:
    """What each service sends, receives, and as which consumer groups, per the document."""
    channels = {key: c["address"] for key, c in ASYNCAPI["channels"].items()}
    found: dict[str, dict[str, set[str]]] = defaultdict(
        lambda: {"send": set(), "receive": set(), "group": set()})
    for key, operation in ASYNCAPI["operations"].items():
        service = key.split("_", 1)[0]
        address = channels[operation["channel"]["$ref"].rsplit("/", 1)[-1]]
        found[service][operation["action"]].add(address)
        group = operation.get("bindings", {}).get("kafka", {}).get("groupId", {}).get("const")
        if group:
            found[service]["group"].add(group)
    return found


def test_every_topic_of_the_asyncapi_document_is_a_replicated_kafka_topic() -> None:
    topics = {t["spec"]["topicName"]: t for t in of_kind("operators", "KafkaTopic").values()}
    addresses = {c["address"] for c in ASYNCAPI["channels"].values()}
    assert set(topics) == addresses
    for topic in topics.values():
        assert topic["spec"]["replicas"] == 3
        assert int(topic["spec"]["config"]["min.insync.replicas"]) == 2
    [kafka] = of_kind("operators", "Kafka").values()
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    pools = of_kind("operators", "KafkaNodePool").values()
    assert sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"]) >= 3


def test_each_kafka_user_may_use_exactly_its_own_topics_and_group() -> None:
    users = of_kind("operators", "KafkaUser")
    assert sorted(users) == sorted(f"relais-{name}" for name in SERVICE_NAMES)
    [kafka] = of_kind("operators", "Kafka").values()
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    declared = _asyncapi_services()
    for name in SERVICE_NAMES:
        granted: dict[tuple[str, str], set[str]] = defaultdict(set)
        for acl in users[f"relais-{name}"]["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            granted[(resource["type"], resource.get("name", ""))] |= set(acl["operations"])
        expected: dict[tuple[str, str], set[str]] = {("cluster", ""): {"IdempotentWrite"}}
        for topic in declared[name]["send"]:
            expected[("topic", topic)] = {"Describe", "Write"}
        for topic in declared[name]["receive"]:
            expected[("topic", topic)] = {"Describe", "Read"}
        for group in declared[name]["group"]:
            expected[("group", group)] = {"Read"}
        assert dict(granted) == expected, name
    for name, deployment in of_kind("operators", "Deployment").items():  # and logs in as it
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["RELAIS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["RELAIS_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
        assert env["RELAIS_KAFKA_SASL_USERNAME"] == name and name in users
        mounted = {m["mountPath"] for m in container["volumeMounts"]}
        assert env["RELAIS_KAFKA_SASL_PASSWORD_FILE"] == "/etc/relais/kafka/password"
        assert "/etc/relais/kafka" in mounted
        # over TLS, the brokers' certificates checked against the cluster CA Strimzi made
        assert env["RELAIS_KAFKA_CA_FILE"] == "/etc/relais/kafka-ca/ca.crt"
        assert "/etc/relais/kafka-ca" in mounted
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["kafka-ca"]["secret"]["secretName"] == "relais-kafka-cluster-ca-cert"
    [listener] = next(iter(of_kind("operators", "Kafka").values()))["spec"]["kafka"][
        "listeners"]
    assert (listener["port"], listener["tls"]) == (9093, True)
    assert of_kind("operators", "ConfigMap")["relais-settings"]["data"][
        "RELAIS_KAFKA_BOOTSTRAP_SERVERS"].endswith(":9093")
    for deployment in of_kind("no-kafka-users", "Deployment").values():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["RELAIS_KAFKA_SECURITY_PROTOCOL"] == "SSL", "TLS without a user"
        assert "RELAIS_KAFKA_SASL_USERNAME" not in env
    assert not of_kind("no-kafka-users", "KafkaUser")
    assert "authorization" not in next(iter(of_kind("no-kafka-users", "Kafka").values()))[
        "spec"]["kafka"]


def test_external_kafka_and_postgresql_render_no_operator_resources() -> None:
    kinds = {o["kind"] for o in objects("external")}
    assert not kinds & OPERATED
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "ScheduledBackup"} <= \
        {o["kind"] for o in objects("operators")}
    values = yaml.safe_load((CHART / "values-external.yaml").read_text())
    settings = of_kind("external", "ConfigMap")["relais-settings"]["data"]
    assert settings["RELAIS_KAFKA_BOOTSTRAP_SERVERS"] == \
        values["kafka"]["external"]["bootstrapServers"]
    for name, deployment in of_kind("external", "Deployment").items():  # SCRAM over TLS
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["RELAIS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["RELAIS_KAFKA_SASL_USERNAME"] == values["kafka"]["external"]["sasl"][
            "username"]
        assert env["RELAIS_KAFKA_CA_FILE"] == "/etc/relais/kafka-ca/ca.crt"
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["kafka-user"]["secret"]["secretName"] == \
            values["kafka"]["external"]["sasl"]["passwordSecret"]
        assert volumes["kafka-ca"]["secret"]["secretName"] == \
            values["kafka"]["external"]["caSecret"]
    [cluster] = of_kind("operators", "Cluster").values()
    assert cluster["spec"]["instances"] >= 2
    assert "barmanObjectStore" in cluster["spec"]["backup"]


def _callers(variant: str) -> dict[str, set[str]]:
    """For each service, the Relais services its NetworkPolicy lets in."""
    allowed: dict[str, set[str]] = {}
    for policy in of_kind(variant, "NetworkPolicy").values():
        selected = policy["spec"]["podSelector"].get("matchLabels", {})
        name = selected.get("app.kubernetes.io/name", "").removeprefix("relais-")
        if name in SERVICE_NAMES:
            allowed[name] = {
                peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"].removeprefix(
                    "relais-")
                for rule in policy["spec"]["ingress"] for peer in rule["from"]
                if "podSelector" in peer and "namespaceSelector" not in peer}
    return allowed


def test_network_policies_let_in_only_the_peers_that_call_each_service() -> None:
    """Each service is reached by the ingress controller and by the services configured to
    call it (RELAIS_*_URL, the auth service's keys), and reaches only those, the database,
    Kafka, DNS and, for those that send email or webhooks, SMTP and public HTTPS."""
    for variant in VARIANTS:
        policies = of_kind(variant, "NetworkPolicy")
        assert policies["relais-default-deny"]["spec"]["policyTypes"] == ["Ingress", "Egress"]
        callers = _callers(variant)
        assert callers == {
            "auth": {"intake", "consent", "referral", "notify"},
            "intake": {"auth", "consent", "referral"},
            "consent": {"intake"},
            "referral": {"intake", "consent"},
            "notify": {"auth", "intake", "referral"}}
        for name in SERVICE_NAMES:
            egress = policies[f"relais-{name}"]["spec"]["egress"]
            public = [rule for rule in egress for peer in rule["to"]
                      if peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0"]
            assert bool(public) == (name == "notify"), name


def test_prometheus_may_scrape_each_pod_and_nobody_outside() -> None:
    """Each pod is annotated for Prometheus's pod discovery, its NetworkPolicy lets in the
    Prometheus pods, and RELAIS_METRICS_NETWORKS names who may read GET /metrics; the Ingress
    routes no /metrics (see test_the_ingress_sends_every_route_to_the_service_that_owns_it)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]
    for variant in VARIANTS:
        settings = of_kind(variant, "ConfigMap")["relais-settings"]["data"]
        assert json.loads(settings["RELAIS_METRICS_NETWORKS"]) == values["networks"]
        policies = of_kind(variant, "NetworkPolicy")
        for name in SERVICE_NAMES:
            pod = of_kind(variant, "Deployment")[f"relais-{name}"]["spec"]["template"]
            annotations = pod["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true"
            assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == \
                ("8080", "/metrics")
            peers = [peer for rule in policies[f"relais-{name}"]["spec"]["ingress"]
                     for peer in rule["from"]]
            assert {"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": values["prometheusNamespace"]}},
                "podSelector": {"matchLabels": values["prometheusPodLabels"]}} in peers, name
    paths = [(p["pathType"], p["path"], p["backend"]["service"]["name"])
             for ingress in of_kind("operators", "Ingress").values()
             for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert _ingress_owner(paths, "/metrics") is None


def _ingress_owner(paths: list[tuple[str, str, str]], path: str) -> str | None:
    """The backend Kubernetes gives `path`: an Exact match, else the longest Prefix that
    matches whole path segments."""
    for kind, rule, backend in paths:
        if kind == "Exact" and rule == path:
            return backend
    best: tuple[int, str] | None = None
    for kind, rule, backend in paths:
        segments = rule.rstrip("/")
        matches = kind == "Prefix" and (rule == "/" or path == segments
                                        or path.startswith(segments + "/"))
        if matches and (best is None or len(segments) > best[0]):
            best = (len(segments), backend)
    return best[1] if best else None


def test_the_ingress_sends_every_route_to_the_service_that_owns_it() -> None:
    """One base URL, as deploy/nginx/relais.conf gives it to the compose file: every route of
    every service reaches it; /internal/ reaches nothing."""
    paths = [(p["pathType"], p["path"], p["backend"]["service"]["name"].removeprefix("relais-"))
             for ingress in of_kind("operators", "Ingress").values()
             for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    settings = Settings.model_validate({"data_dir": "/tmp/unused", "database_url": "x"})
    for name in SERVICE_NAMES:
        app = create_app(settings, "postgresql://unused/x", service_specs([name]))
        for route in app.router.routes():
            if route.resource is None:
                continue
            path = re.sub(r"\{[^}]+\}", "x", route.resource.canonical)
            if path in ("/healthz", "/readyz", "/openapi.json", "/metrics"):
                continue  # each pod's own (the probes and Prometheus ask the pod itself)
            owner = _ingress_owner(paths, path)
            if path.startswith("/internal/"):
                assert owner is None, path
            else:
                shared = path == "/static" or path.startswith("/static/")  # the runtime's
                assert owner == name or (shared and owner == "auth"), \
                    (name, route.method, path, owner)
    streams = of_kind("operators", "Ingress")["relais-streams"]
    assert streams["metadata"]["annotations"]
