"""JSON schemas for kubeconform, made from the Kubernetes OpenAPI document and the operators'
CRDs (deploy/kubernetes/install-tools.sh fetches them from the registries).

kubeconform looks a resource's schema up as `{{ .ResourceKind }}{{ .KindSuffix }}.json`
(`deployment-apps-v1.json`, `kafka-kafka-v1.json`); its own schemas come from GitHub, which this
project cannot reach, so they are made here the way its scripts make them: every object that
declares properties refuses others (`-strict`: a misspelt field is an error, as `kubectl
apply --validate=strict` says), int-or-string values accept both.

    python deploy/kubernetes/schemas.py OUT --openapi swagger.json --crd FILE.yaml ...
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}


def file_name(kind: str, api_version: str) -> str:
    """kubeconform's name for the schema of `kind` in `api_version` (pkg/registry)."""
    group, _, version = api_version.rpartition("/")
    suffix = f"-{(group or version).split('.')[0].lower()}"
    if group:
        suffix += f"-{version.lower()}"
    return f"{kind.lower()}{suffix}.json"


def strict(schema: Any) -> Any:
    """Every object with properties refuses the others, unless it says it keeps unknown fields
    (`x-kubernetes-preserve-unknown-fields`, as the API server does); int-or-string fields
    take both."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("format") == "int-or-string":
        return dict(INT_OR_STRING)
    out = {key: strict(value) for key, value in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _refs(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            yield ref.rsplit("/", 1)[-1]
        for value in schema.values():
            yield from _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _refs(item)


def from_openapi(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """One schema per kind of the Kubernetes OpenAPI (v2) document, with the definitions it
    refers to beside it."""
    definitions: dict[str, Any] = document["definitions"]
    definitions = {name: strict(d) for name, d in definitions.items()}
    for name in list(definitions):
        if name.endswith("pkg.api.resource.Quantity"):
            definitions[name] = dict(QUANTITY)
        elif name.endswith("pkg.util.intstr.IntOrString"):
            definitions[name] = dict(INT_OR_STRING)
    for name, definition in definitions.items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            needed, todo = {}, [name]
            while todo:
                current = todo.pop()
                if current in needed:
                    continue
                needed[current] = definitions[current]
                todo.extend(_refs(definitions[current]))
            schema = dict(definition)
            schema["definitions"] = needed
            yield file_name(gvk["kind"], api_version), schema


def from_crd(crd: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """One schema per served version of a CustomResourceDefinition."""
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        schema = strict(version["schema"]["openAPIV3Schema"])
        yield file_name(kind, f"{group}/{version['name']}"), schema


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--openapi", type=Path, action="append", default=[])
    parser.add_argument("--crd", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for path in args.openapi:
        for name, schema in from_openapi(json.loads(path.read_text("utf-8"))):
            (args.out / name).write_text(json.dumps(schema), "utf-8")
            written += 1
    for path in args.crd:
        for document in yaml.safe_load_all(path.read_text("utf-8")):
            if document and document.get("kind") == "CustomResourceDefinition":
                for name, schema in from_crd(document):
                    (args.out / name).write_text(json.dumps(schema), "utf-8")
                    written += 1
    if not written:
        print("no schema written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
