"""The vocabularies in plain French, for what counsellors and people read (pages, messages)."""

from __future__ import annotations

from schemas.vocab import (
    AgeBracket,
    Arrival,
    Channel,
    Gender,
    Milestone,
    Need,
    Outcome,
    Purpose,
    ReferralAction,
    ReferralStatus,
    RejectReason,
    SituationFlag,
)

NEEDS: dict[str, str] = {
    Need.employment: "emploi", Need.training: "formation",
    Need.administrative_steps: "démarches administratives", Need.rights: "accès aux droits",
    Need.health: "santé", Need.housing: "logement", Need.mobility: "mobilité",
    Need.digital_skills: "numérique", Need.sport_leisure: "sport et loisirs",
    Need.other: "autre besoin",
}
CHANNELS: dict[str, str] = {
    Channel.mobile_permanence: "Camion, permanence mobile",
    Channel.fixed_permanence: "Permanence fixe", Channel.online: "En ligne",
    Channel.phone: "Téléphone", Channel.network_relay: "Par un relais du réseau",
}
ARRIVALS: dict[str, str] = {
    Arrival.walk_in: "Sans rendez-vous", Arrival.appointment: "Sur rendez-vous",
}
FLAGS: dict[str, str] = {
    SituationFlag.known_mission_locale: "Déjà connue de la Mission locale",
    SituationFlag.known_france_travail: "Déjà connue de France Travail",
    SituationFlag.rsa: "Au RSA", SituationFlag.dropped_out: "A décroché (école, formation)",
    SituationFlag.no_income: "Sans ressources", SituationFlag.no_housing: "Sans logement stable",
    SituationFlag.disability: "En situation de handicap",
}
AGES: dict[str, str] = {
    AgeBracket.under_16: "moins de 16 ans", AgeBracket.from_16_to_17: "16-17 ans",
    AgeBracket.from_18_to_25: "18-25 ans", AgeBracket.from_26_to_29: "26-29 ans",
    AgeBracket.from_30_to_49: "30-49 ans", AgeBracket.from_50: "50 ans et plus",
}
STATUSES: dict[str, str] = {
    ReferralStatus.awaiting_consent: "En attente du consentement",
    ReferralStatus.requested: "Nouvelle", ReferralStatus.received: "Reçue",
    ReferralStatus.accepted: "Acceptée", ReferralStatus.rejected: "Refusée",
    ReferralStatus.in_progress: "Accompagnement commencé",
    ReferralStatus.completed: "Terminée", ReferralStatus.cancelled: "Annulée",
    ReferralStatus.expired: "Expirée, sans réponse", ReferralStatus.on_hold: "En pause",
}
STATUS_BADGES: dict[str, str] = {  # DSFR badge kinds
    ReferralStatus.requested: "new", ReferralStatus.received: "info",
    ReferralStatus.accepted: "success", ReferralStatus.in_progress: "success",
    ReferralStatus.completed: "success", ReferralStatus.rejected: "error",
    ReferralStatus.expired: "warning", ReferralStatus.cancelled: "warning",
}
ACTIONS: dict[str, str] = {
    ReferralAction.receive: "Accuser réception", ReferralAction.accept: "Accepter",
    ReferralAction.reject: "Refuser", ReferralAction.start: "Premier rendez-vous tenu",
    ReferralAction.complete: "Terminer l'accompagnement", ReferralAction.cancel: "Annuler",
    ReferralAction.hold: "Mettre en pause",
    "request": "Transmise avec le consentement de la personne", "expire": "Expirée",
    "decide": "Décision de la commission", "create": "Créée",
}
SYSTEM_STEPS: dict[str, str] = {  # what Relais itself did, in a referral's history
    "create": "Créée par l'orientation automatique",
    "request": "Transmise avec le consentement de la personne",
    "expire": "Délai de réponse dépassé", "cancel": "Annulée",
    "decide": "Décision de la commission",
}
REASONS: dict[str, str] = {
    RejectReason.not_reachable: "Personne injoignable",
    RejectReason.did_not_come: "Ne s'est pas présentée",
    RejectReason.not_eligible: "Ne relève pas de notre structure",
    RejectReason.no_place: "Plus de place disponible",
    RejectReason.not_interested: "La personne ne souhaite pas donner suite",
    RejectReason.followed_elsewhere: "Déjà accompagnée ailleurs",
    RejectReason.duplicate: "Doublon", RejectReason.other: "Autre motif (à préciser)",
}
MILESTONES: dict[str, str] = {
    Milestone.first_appointment: "Premier rendez-vous tenu",
    Milestone.contract_signed: "Contrat ou engagement signé",
}
OUTCOMES: dict[str, str] = {
    Outcome.registered_mission_locale: "Inscrite à la Mission locale",
    Outcome.registered_france_travail: "Inscrite à France Travail",
    Outcome.training: "Entrée en formation", Outcome.job: "Accès à l'emploi",
    Outcome.contrat_engagement_jeune: "Contrat d'engagement jeune",
    Outcome.stopped: "Accompagnement arrêté",
    Outcome.oriented_to_partner: "Orientée vers un partenaire",
    Outcome.kept_with_outreach: "Suivie par l'équipe d'aller vers",
}
PURPOSES: dict[str, str] = {
    Purpose.referral_commission: "passage en commission de remobilisation",
    Purpose.referral_partner: "orientation vers un partenaire",
    Purpose.share_dossier: "partage du dossier", Purpose.recontact: "être recontactée",
}
CATEGORIES: dict[str, str] = {
    "identity": "identité", "contact": "coordonnées", "situation": "situation",
    "needs": "besoins", "note": "notes",
}
GENDERS: dict[str, str] = {  # as the person states it, if they wish
    Gender.female: "Femme", Gender.male: "Homme", Gender.other: "Autre",
    "not_given": "Non précisé",
}
RELAY_KINDS: dict[str, str] = {  # the relays of the network (schemas.api.RelayKind)
    "mayor": "Mairie", "shop": "Commerce", "sports_club": "Club de sport",
    "association": "Association", "social_landlord": "Bailleur social",
    "school": "Établissement scolaire", "other": "Autre relais",
}
