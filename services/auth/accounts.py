"""Personal accounts: roles and what they allow, passwords, lock-out (no I/O but hashing).

A person signs in as themself; their session is an access token like an API client's, whose
client id names the session (`session:<uuid>`) and whose `name` claim names the person, so
that every action and every dossier read is recorded with who did it."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

SESSION_PREFIX = "session:"
SESSION_HOURS = 10
INVITATION_DAYS = 7
MAX_FAILURES = 5
LOCK_MINUTES = 15
MIN_PASSWORD = 12
_HASHER = PasswordHasher()  # argon2id, the library's current recommended parameters
_DUMMY = _HASHER.hash("relais: no such account")


class Role(StrEnum):
    counsellor = "counsellor"
    coordinator = "coordinator"
    funder = "funder"
    auditor = "auditor"
    dpo = "dpo"
    administrator = "administrator"


_COUNSELLOR = ("intake:write", "intake:read", "consent:write", "consent:read",
               "referral:read", "referral:write", "people:read", "notification:read")
SCOPES_OF: dict[Role, tuple[str, ...]] = {
    Role.counsellor: _COUNSELLOR,
    Role.coordinator: (*_COUNSELLOR, "directory:write", "notification:write"),
    Role.funder: ("stats:read",),
    Role.auditor: ("audit:read",),
    Role.dpo: ("audit:read", "people:export", "people:rectify", "people:restrict"),
    Role.administrator: (*_COUNSELLOR, "directory:write", "notification:write", "audit:read",
                         "stats:read", "people:erase", "people:export", "people:rectify",
                         "people:restrict"),
}
TERRITORY_ROLES = frozenset({Role.coordinator, Role.administrator, Role.dpo})
"""Roles that act for the whole territory (`directory:write`): for the coordination only."""
ROLE_LABELS = {Role.counsellor: "Conseiller ou conseillère",
               Role.coordinator: "Coordination", Role.funder: "Financeur",
               Role.auditor: "Audit et protection des données",
               Role.dpo: "Délégué à la protection des données",
               Role.administrator: "Administration"}


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_matches(password: str, stored: str | None) -> bool:
    """Always one argon2 check, so that an unknown account takes as long as a wrong
    password."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def password_problem(password: str, confirmation: str) -> str | None:
    """What is wrong with a new password, in French (None: fine)."""
    if password != confirmation:
        return "Les deux mots de passe ne sont pas identiques."
    if len(password) < MIN_PASSWORD:
        return f"Le mot de passe doit compter au moins {MIN_PASSWORD} caractères."
    return None


def new_token() -> tuple[str, bytes]:
    """A secret for a link, and the hash kept of it."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of a sign-in attempt, and what to record."""

    ok: bool
    failures: int
    locked_until: datetime | None
    message: str | None


GENERIC_REFUSAL = ("Adresse électronique ou mot de passe incorrect. Après plusieurs erreurs, "
                   "le compte est bloqué quelques minutes.")
TOO_MANY = ("Trop d'essais depuis cet appareil : réessayez dans une minute, ou demandez à "
            "la coordination du territoire.")
PENDING_MINUTES = 5
"""How long the code of the second factor may be typed after a right password."""
CODE_REFUSAL = ("Code incorrect ou expiré. Saisissez le code à 6 chiffres que votre "
                "application affiche maintenant. Après plusieurs erreurs, le compte est "
                "bloqué quelques minutes.")
CODE_REPLAYED = ("Ce code a déjà servi. Attendez que votre application en affiche un nouveau "
                 "(il change toutes les 30 secondes).")


def judge_login(*, exists: bool, disabled: bool, password_ok: bool, failures: int,
                locked_until: datetime | None, now: datetime) -> Attempt:
    """Lock-out after MAX_FAILURES failures in a row, for LOCK_MINUTES; the same words for
    an unknown address, a wrong password and a locked account (which would otherwise tell
    who has an account)."""
    if locked_until is not None and locked_until > now:
        return Attempt(False, failures, locked_until, GENERIC_REFUSAL)
    if not exists or disabled or not password_ok:
        failures += 1
        lock = now + timedelta(minutes=LOCK_MINUTES) if failures >= MAX_FAILURES else None
        return Attempt(False, 0 if lock else failures, lock, GENERIC_REFUSAL)
    return Attempt(True, 0, None, None)


def invitation_email(name: str, link: str) -> tuple[str, str]:
    """The invitation's subject and text, in French."""
    return ("[Relais] Votre compte : choisissez votre mot de passe",
            f"Bonjour {name},\n\n"
            "Un compte personnel a été créé pour vous dans Relais, l'outil qui transmet les "
            "personnes rencontrées en « aller vers » aux partenaires qui les accompagnent.\n\n"
            f"Choisissez votre mot de passe avec ce lien, valable {INVITATION_DAYS} jours et "
            f"une seule fois :\n{link}\n\n"
            "Si vous n'attendiez pas ce message, ignorez-le : sans mot de passe choisi, le "
            "compte ne peut pas servir.\n\n--\nRelais\n")
