#!/bin/sh
# Installs what tests/e2e/test_kubernetes.py validates the Helm chart with, pinned, into
# deploy/kubernetes/.tools/ (no container engine or cluster needed; none is here):
#   bin/helm, bin/kubeconform   Go modules, built by the machine's go (the Go module proxy)
#   schemas/                    JSON schemas for kubeconform, made by schemas.py from
#     - the Kubernetes OpenAPI document (api/openapi-spec of the k8s.io/kubernetes module),
#     - CloudNativePG's CRDs (config/crd of its Go module),
#     - Strimzi's CRDs, made by Strimzi's own crd-generator from its api jar (Maven Central,
#       strimzi/pom.xml; Java 21 or later, as Strimzi's classes need).
# Idempotent: does nothing when the stamp says these versions are installed. Quiet: prints
# only what failed.
set -eu

HELM_VERSION=v4.3.2
KUBECONFORM_VERSION=v0.7.0
KUBERNETES_VERSION=v1.34.4
CNPG_VERSION=v1.30.0

here=$(cd "$(dirname "$0")" && pwd)
tools=$here/.tools
python=${PYTHON:-$here/../../.venv/bin/python}
strimzi_version=$(sed -n 's:.*<strimzi.version>\(.*\)</strimzi.version>.*:\1:p' "$here/strimzi/pom.xml")
wanted="helm $HELM_VERSION kubeconform $KUBECONFORM_VERSION kubernetes $KUBERNETES_VERSION cloudnative-pg $CNPG_VERSION strimzi $strimzi_version schemas.py $(cksum < "$here/schemas.py")"
if [ -f "$tools/.stamp" ] && [ "$(cat "$tools/.stamp")" = "$wanted" ]; then exit 0; fi

go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$go" ] || { echo "go is missing (the Go toolchain, 1.26 or later): install it and retry." >&2; exit 1; }
java=${JAVA:-}
if [ -z "$java" ]; then
  for candidate in "$(command -v java || true)" /usr/lib/jvm/temurin-25-jdk-amd64/bin/java \
                   /usr/lib/jvm/java-21-openjdk-amd64/bin/java; do
    [ -x "$candidate" ] || continue
    major=$("$candidate" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    if [ "${major:-0}" -ge 21 ]; then java=$candidate; break; fi
  done
fi
[ -n "$java" ] || { echo "Java 21 or later is missing (Strimzi's CRD generator needs it): set JAVA=/path/to/java." >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() {  # a step's chatter is shown only when it fails
  if ! "$@" >>"$log" 2>&1; then cat "$log" >&2; echo "failed: $*" >&2; exit 1; fi
}
module_dir() {  # where the Go module cache holds $1
  "$go" mod download -json "$1" | "$python" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'
}

rm -rf "$tools/schemas" "$tools/crds"
mkdir -p "$tools/bin" "$tools/crds"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
run env GOBIN="$tools/bin" "$go" install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
run env GOBIN="$tools/bin" "$go" install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"

kubernetes=$(module_dir "k8s.io/kubernetes@$KUBERNETES_VERSION" 2>>"$log") || { cat "$log" >&2; exit 1; }
cnpg=$(module_dir "github.com/cloudnative-pg/cloudnative-pg@$CNPG_VERSION" 2>>"$log") || { cat "$log" >&2; exit 1; }

run mvn -B -q -f "$here/strimzi/pom.xml" dependency:copy-dependencies
for kind in kafka.Kafka nodepool.KafkaNodePool topic.KafkaTopic user.KafkaUser; do
  set -- "$@" --yaml "io.strimzi.api.kafka.model.$kind=$tools/crds/strimzi-${kind#*.}.yaml"
done
run "$java" -cp "$tools/strimzi-lib/*" io.strimzi.crdgenerator.CrdGenerator \
  --crd-api-version v1 --api-versions v1 --storage-version v1 "$@"

run "$python" "$here/schemas.py" "$tools/schemas" \
  --openapi "$kubernetes/api/openapi-spec/swagger.json" \
  --crd "$cnpg/config/crd/bases/postgresql.cnpg.io_clusters.yaml" \
  --crd "$cnpg/config/crd/bases/postgresql.cnpg.io_scheduledbackups.yaml" \
  --crd "$tools/crds/strimzi-Kafka.yaml" --crd "$tools/crds/strimzi-KafkaNodePool.yaml" \
  --crd "$tools/crds/strimzi-KafkaTopic.yaml" --crd "$tools/crds/strimzi-KafkaUser.yaml"
echo "$wanted" > "$tools/.stamp"
