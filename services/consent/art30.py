"""The record of processing activities (GDPR art. 30, issue #14), generated from what Relais
is configured with: the directory (controllers, recipients, their retention periods) and the
settings (the periods of the logs, the processors: email, SMS, sign-in, telemetry, database).
Pure: `build` reads nothing; `GET /v1/audit/register` and the audit page's `/audit/registre`
give it the directory and settings; `document` writes it in French."""

from __future__ import annotations

import os
from datetime import datetime
from urllib.parse import urlsplit

from schemas.api import ProcessingRegister, RegisterController, RegisterEntry
from schemas.vocab_fr import CATEGORIES, PURPOSES
from services.directory import Directory
from services.runtime.settings import Settings
from services.runtime.web import environment

E = RegisterEntry
KINDS = {"mission_locale": "Mission locale", "france_travail": "France Travail",
         "cap_emploi": "Cap emploi", "ccas": "CCAS", "plie": "PLIE",
         "association": "association", "commission": "commission de remobilisation",
         "outreach_team": "équipe d'aller vers", "coordination": "coordination territoriale"}
SEALED = {"identity", "contact", "note"}


def _host(url: str | None) -> str | None:
    return urlsplit(url).hostname if url else None


def processors(settings: Settings, environ: dict[str, str]) -> list[RegisterEntry]:
    """Who processes personal data on the controllers' behalf, as configured."""
    found = [E(name="Hébergement de la base de données (PostgreSQL)",
               detail=f"{_host(settings.database_url) or 'serveur de Relais (intégrée)'} : "
                      "toutes les données, l'identité, les coordonnées et les notes scellées "
                      "(illisibles sans la clé maîtresse)"),
             E(name="Envoi des courriels (SMTP)",
               detail=f"{settings.smtp_host}:{settings.smtp_port} : les adresses des "
                      "structures et des conseillers ; les reçus d'accord envoyés à la "
                      "personne qui le demande (son adresse)")]
    if settings.sms_url:
        found.append(E(name="Envoi des SMS", detail=f"{_host(settings.sms_url)} : le numéro de "
                       "la personne qui demande son reçu par SMS, et ce reçu"))
    if settings.oidc_issuer:
        found.append(E(name="Fournisseur d'identité (OpenID Connect)",
                       detail=f"{_host(settings.oidc_issuer)} : l'identité des personnes des "
                              "structures qui se connectent à la console"))
    if settings.transport == "kafka":
        found.append(E(name="Bus d'événements (Apache Kafka)",
                       detail=f"{settings.kafka_bootstrap_servers} : des identifiants "
                              "pseudonymes, jamais de nom, de coordonnées ni de note"))
    if otlp := environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        found.append(E(name="Traces techniques (OpenTelemetry)",
                       detail=f"{_host(otlp)} : des durées et des chemins d'appel, sans "
                              "donnée personnelle"))
    return found


def build(directory: Directory, settings: Settings, now: datetime,
          environ: dict[str, str] | None = None) -> ProcessingRegister:
    orgs = directory.organisations
    return ProcessingRegister(
        generated_at=now,
        name="Relais : repérage, premier accueil et orientation des personnes accompagnées "
             "par les programmes « aller vers »",
        controllers=[RegisterController(
            id=o.id, name=o.name, kind=KINDS.get(o.kind, o.kind), email=str(o.email),
            retention_months=o.retention_months, retention_basis=o.retention_basis)
            for o in orgs],
        purposes=[
            E(name="Accueil et premier diagnostic",
              detail="noter les rencontres, les besoins et la situation des personnes "
                     "rencontrées, pour les accompagner"),
            *[E(name=label[:1].upper() + label[1:],
                detail="seulement avec l'accord explicite de la personne, enregistré et "
                       "retirable à tout moment") for label in PURPOSES.values()],
            E(name="Statistiques des financeurs",
              detail="des comptes anonymes (aucune case de moins de 5 personnes)"),
            E(name="Preuve des accords", detail="un journal signé et vérifiable des accords, "
                                                "de leurs retraits et des lectures")],
        data_subjects=[
            E(name="Personnes rencontrées", detail="jeunes et adultes qu'aucune structure ne "
                                                   "suit, rencontrés par les équipes"),
            E(name="Personnes des structures", detail="conseillers, coordinations, "
                                                      "financeurs, auditeurs : leurs comptes")],
        data_categories=[
            E(name=label[:1].upper() + label[1:],
              detail="scellée avec une clé propre à la personne" if key in SEALED
              else "en clair, sans identité") for key, label in CATEGORIES.items()]
        + [E(name="Preuve de l'accord", detail="signature ou photo du formulaire, scellée"),
           E(name="Journal des lectures", detail="qui a lu quoi, quand, sous quel accord")],
        recipients=[E(name=o.name, detail=KINDS.get(o.kind, o.kind)) for o in orgs
                    if o.kind not in ("outreach_team", "coordination")],
        retention=[
            E(name="Données d'accompagnement",
              detail="tant qu'un accord est en cours, puis la durée de conservation de chaque "
                     "structure qui a rencontré la personne (voir les responsables ; 24 mois "
                     "par défaut) après sa dernière activité ; effacement automatique chaque "
                     "jour"),
            E(name="Accords", detail="24 mois au plus chacun"),
            E(name="Journal des lectures",
              detail=f"{settings.retention_access_log_days} jours"),
            E(name="Notifications et tentatives d'envoi",
              detail=f"{settings.retention_notifications_days} jours"),
            E(name="Journal des accords", detail="gardé entier pour la preuve, sans identité "
                                                 "(identifiants pseudonymes)")],
        processors=processors(settings, dict(os.environ) if environ is None else environ),
        transfers="Aucun transfert hors de l'Union européenne, sauf si un sous-traitant "
                  "ci-dessus en fait : à vérifier dans son contrat.",
        security=[
            E(name="Chiffrement", detail="identité, coordonnées, notes et preuves scellées "
                                         "(AES-256-GCM), une clé par personne, elle-même "
                                         "scellée par la clé maîtresse"),
            E(name="Effacement", detail="destruction de la clé de la personne ; registre des "
                                        "effacements hors de la base, rejoué après une "
                                        "restauration"),
            E(name="Accès", detail="OAuth2 par structure et par habilitation ; chaque lecture "
                                   "journalisée ; seconde étape de connexion à la console"),
            E(name="Preuve", detail="journal des accords signé (Ed25519), vérifiable hors "
                                    "ligne (relais audit verify)")],
    )


def document(register: ProcessingRegister) -> str:
    """The register as a French document (services/consent/screens/registre.html)."""
    return environment().get_template("consent/registre.html").render(register=register)
