"""Import from data·inclusion, the national catalogue of inclusion structures and services,
so that a territory starts from what already exists. Rows are validated with the
catalogue's own published schema (the `data-inclusion-schema` package, v1); each kept
structure becomes an organisation, its services' themes become the needs it serves."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from data_inclusion.schema.v1 import Service, Structure
from pydantic import ValidationError

from schemas.vocab import Need
from services.directory import Directory, Organisation

PREFIX = "di-"
NEEDS_BY_CATEGORY: dict[str, Need] = {
    "trouver-un-emploi": Need.employment, "preparer-sa-candidature": Need.employment,
    "choisir-un-metier": Need.employment, "creer-une-entreprise": Need.employment,
    "se-former": Need.training, "lecture-ecriture-calcul": Need.training,
    "difficultes-administratives-ou-juridiques": Need.administrative_steps,
    "difficultes-financieres": Need.rights, "equipement-et-alimentation": Need.rights,
    "famille": Need.rights, "sante": Need.health, "logement-hebergement": Need.housing,
    "mobilite": Need.mobility, "numerique": Need.digital_skills,
}
KINDS = {"mission-locale": "mission_locale", "france-travail": "france_travail",
         "cap-emploi-reseau-cheops": "cap_emploi", "ccas-cias": "ccas", "plie": "plie"}


@dataclass
class Report:
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def slug(source_id: str) -> str:
    return (PREFIX + re.sub(r"[^a-z0-9]+", "-", source_id.lower()).strip("-"))[:80]


def convert(structures: Iterable[Mapping[str, Any]], services: Iterable[Mapping[str, Any]],
            communes: set[str] | None = None) -> tuple[list[Organisation], Report]:
    report = Report()
    by_structure: dict[str, list[Service]] = {}
    for raw in services:
        try:
            service = Service.model_validate(raw)
        except ValidationError as exc:
            report.skipped.append(f"service {raw.get('id')}: {_first(exc)}")
            continue
        by_structure.setdefault(service.structure_id, []).append(service)
    organisations = []
    for raw in structures:
        try:
            structure = Structure.model_validate(raw)
        except ValidationError as exc:
            report.skipped.append(f"structure {raw.get('id')}: {_first(exc)}")
            continue
        offered = by_structure.get(structure.id, [])
        places = {c for c in [structure.code_insee, *(s.code_insee for s in offered)] if c}
        if communes and not places & communes:
            continue
        email = structure.courriel or next((s.courriel for s in offered if s.courriel), None)
        if email is None:
            report.skipped.append(f"structure {structure.id}: no email to notify")
            continue
        needs = sorted({NEEDS_BY_CATEGORY[t.value.split("--")[0]] for s in offered
                        for t in (s.thematiques or ())
                        if t.value.split("--")[0] in NEEDS_BY_CATEGORY})
        kind = next((KINDS[r.value] for r in structure.reseaux_porteurs or ()
                     if r.value in KINDS), "association")
        organisations.append(Organisation(
            id=slug(structure.id), name=structure.nom, kind=kind, email=str(email),
            needs=needs, communes=sorted(places)))
        report.imported.append(structure.id)
    return organisations, report


def merge(base: Directory, imported: list[Organisation]) -> Directory:
    """The base directory with the imported organisations added or brought up to date."""
    new = {o.id: o for o in imported}
    kept = [new.pop(o.id, o) for o in base.organisations]
    return base.model_copy(update={"organisations": kept + list(new.values())})


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
