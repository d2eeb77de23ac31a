"""The funders' statistics page: the figures of `GET /v1/stats` as bar charts drawn on the
server (SVG: no script, no inline style), each followed by its table, and the same CSV file
as `GET /v1/stats.csv`, for a signed-in person with `stats:read`. The figures and the CSV
come from stats.py; this module only reads the filters, names the categories and draws."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from schemas import vocab_fr as fr
from schemas.api import RelayKind
from schemas.vocab import AgeBracket, Arrival, Gender, ReferralStatus
from services.directory import Programme
from services.referral import stats, store
from services.runtime import web as pages
from services.runtime.app import RUNTIME

SCOPE = "stats:read"
SPAN = 80.0  # % of a chart's width the largest bar takes; its value is written after it
MIN_BAR = 0.5  # % : a shown figure always has a visible bar
ROW = 52  # px per category in a chart: its label, then its bar
LABEL_CHARS = 44  # a chart cuts longer labels (its table has them whole)
HIDDEN = f"< {stats.THRESHOLD}"
WEEKDAYS = {"monday": "lundi", "tuesday": "mardi", "wednesday": "mercredi",
            "thursday": "jeudi", "friday": "vendredi", "saturday": "samedi",
            "sunday": "dimanche"}
VISITS = {"first": "Rencontrées pour la première fois",
          "returning": "Déjà rencontrées, revenues"}
STATUSES = {  # as a funder reads them (the inbox's words are a counsellor's)
    **fr.STATUSES, ReferralStatus.awaiting_consent: "En attente de l'accord de la personne",
    ReferralStatus.requested: "Transmise, pas encore ouverte",
    ReferralStatus.received: "Reçue, pas encore de réponse",
}


@dataclass(frozen=True)
class Dimension:
    """How one figure of the API reads: its table's columns, what it counts, its order."""

    column: str
    unit: str
    note: str
    percent: bool = False
    order: tuple[str, ...] = ()  # this order; else the largest first

    @property
    def hidden(self) -> str:
        """What a hidden figure reads: "< 5" (people), else "< 5 personnes"."""
        return HIDDEN if self.unit == "Personnes" else f"{HIDDEN} personnes"


DIMENSIONS: dict[str, Dimension] = {
    "site": Dimension("Lieu", "Contacts", "Nombre de contacts sur chaque lieu : une "
                      "personne venue deux fois compte deux fois."),
    "permanence": Dimension("Permanence", "Contacts", "Nombre de contacts à chaque "
                            "permanence (les contacts hors permanence n'y figurent pas)."),
    "visit": Dimension("Rencontre", "Personnes", "Nombre de personnes différentes : une "
                       "personne venue puis revenue sur la période compte dans les deux.",
                       order=tuple(VISITS)),
    "age_bracket": Dimension("Tranche d'âge", "Personnes", "Nombre de personnes différentes "
                             "dans chaque tranche d'âge.",
                             order=(*AgeBracket, "unknown")),
    "gender": Dimension("Genre", "Part des personnes", "Part des personnes rencontrées, en "
                        "pourcentage, selon ce qu'elles ont choisi de dire.", percent=True,
                        order=(*Gender, "not_given")),
    "need": Dimension("Besoin", "Personnes", "Nombre de personnes différentes ayant exprimé "
                      "chaque besoin ; une personne peut en exprimer plusieurs."),
    "arrival": Dimension("Venue", "Personnes", "Nombre de personnes différentes venues sans "
                         "rendez-vous ou sur rendez-vous ; une personne venue des deux façons "
                         "compte dans les deux.", order=(*Arrival, "not_given")),
    "status": Dimension("Où en est l'orientation", "Orientations", "Orientations des "
                        "personnes rencontrées sur la période, selon leur état aujourd'hui.",
                        order=tuple(ReferralStatus)),
    "target": Dimension("Structure", "Orientations", "Orientations des personnes rencontrées "
                        "sur la période, par structure qui les reçoit."),
    "signal": Dimension("Type de relais", "Signalements", "Personnes signalées à l'équipe "
                        "mobile par les relais du réseau sur la période, par type de relais "
                        "(jamais le nom d'un relais).", order=tuple(RelayKind)),
    "signal_answered": Dimension("Type de relais", "Signalements", "Parmi ces personnes, "
                                 "celles que l'équipe mobile a rencontrées : un contact a "
                                 "répondu au signalement.", order=tuple(RelayKind)),
}
SECTIONS = (("Les personnes rencontrées", ("site", "permanence", "visit", "age_bracket",
                                             "gender", "need", "arrival")),
            ("Les orientations", ("status", "target")),
            ("Les signalements du réseau", ("signal", "signal_answered")))
ANSWERS = (  # (figure, what it says, unit: people, hours or %)
    ("handed_off", "Personnes orientées vers une structure, avec leur accord", ""),
    ("answered", "Personnes dont l'orientation a reçu une réponse", ""),
    ("hours_to_first_answer_median", "Délai dans lequel la moitié des premières réponses "
     "sont arrivées", "h"),
    ("hours_to_first_answer_p90", "Délai dans lequel 9 premières réponses sur 10 sont "
     "arrivées", "h"),
    ("share_answered_within_deadline", "Orientations avec une réponse dans le délai de la "
     "structure", " %"),
    ("share_accepted", "Orientations acceptées, parmi celles acceptées ou refusées", " %"),
)

FIGURES = {  # the other tables: figure -> ((figure, what it says, unit), ...), and a note
    "time_spent": ((
        ("people", "Personnes dont la durée de l'échange est connue", ""),
        ("contacts", "Contacts dont la durée est connue", ""),
        ("minutes_average", "Durée moyenne d'un échange", " min"),
        ("minutes_median", "Durée médiane d'un échange : la moitié durent moins", " min"),
    ), "Sur les contacts dont l'équipe a noté la durée de l'échange."),
    "qpv": ((
        ("people", "Personnes rencontrées sur un lieu en quartier prioritaire", ""),
        ("share", "Part des personnes rencontrées", " %"),
    ), "Personnes différentes rencontrées au moins une fois sur un lieu que l'annuaire "
       "situe en quartier prioritaire de la politique de la ville (son code QPV)."),
    "signal_to_contact": ((
        ("answered", "Signalements suivis d'un contact", ""),
        ("hours_median", "Délai dans lequel la moitié de ces signalements ont reçu un "
         "premier contact", "h"),
        ("hours_average", "Délai moyen entre le signalement et le premier contact", "h"),
    ), "Pour les signalements des relais du réseau reçus sur la période et suivis d'un "
       "contact : le temps entre le signalement et ce contact."),
}


@dataclass(frozen=True)
class Bar:
    label: str  # whole, in the table
    short: str  # in the chart
    shown: str  # the figure as written: "12", "83,3 %", "< 5"
    hidden: bool
    width: str  # % of the chart's width
    y: int  # top of its row in the chart


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    dimension: Dimension
    bars: list[Bar]

    @property
    def height(self) -> int:
        return ROW * len(self.bars)

    @property
    def rows(self) -> list[tuple[str, str]]:
        return [(bar.label, bar.shown) for bar in self.bars]


def number(value: float | None, unit: str = "") -> str:
    """A figure in French: 1 234, 83,3 %; hidden when None."""
    if value is None:
        return HIDDEN
    text = f"{value:,.1f}" if value != int(value) else f"{int(value):,}"
    return text.replace(",", "\u202f").replace(".", ",") + unit.replace(" ", "\u00a0")


def hours(value: float | None) -> str:
    """A delay in plain words: moins d'une heure, 5,5 heures, 50 heures (2,1 jours)."""
    if value is None:
        return f"{HIDDEN} personnes"
    if value < 1:
        return "moins d'une heure"
    text = number(value, " heure" if value < 2 else " heures")
    return text if value < 48 else f"{text} ({number(round(value / 24, 1), ' jours')})"


def answer(value: float | None, unit: str) -> str:
    if unit == "h":
        return hours(value)
    return number(value, unit) if value is not None or not unit else f"{HIDDEN} personnes"


def shorten(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1].rstrip() + "…"


def chart(key: str, values: Mapping[str, float | None], names: Mapping[str, str]) -> Chart:
    """One figure's bars: the largest shown value (100 % for shares) spans SPAN % of the
    width; a hidden value has no bar, only its "< 5"."""
    dimension = DIMENSIONS[key]
    if dimension.order:
        rank = {k: i for i, k in enumerate(dimension.order)}
        keys = sorted(values, key=lambda k: (rank.get(k, len(rank)), k))
    else:
        keys = sorted(values, key=lambda k: (values[k] is None, -(values[k] or 0),
                                             names.get(k, k)))
    shown = [v for v in values.values() if v is not None]
    top = 100.0 if dimension.percent else max(shown, default=0) or 1
    unit = " %" if dimension.percent else ""
    bars = []
    for i, k in enumerate(keys):
        value = values[k]
        label = names.get(k, k)
        width = 0.0 if value is None else max(MIN_BAR, SPAN * value / top)
        shown_as = dimension.hidden if value is None else number(value, unit)
        bars.append(Bar(label, shorten(label), shown_as, value is None,
                        f"{width:.2f}", i * ROW))
    return Chart(key, stats.LABELS[key], dimension, bars)


def category_names(sites: Sequence[Any], permanences: Sequence[Any],
                   partners: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Each figure's categories in words: the directory's names for the places and
    structures, the vocabularies for the rest (an unknown id is shown as it is)."""
    site_names = {r["id"]: r["name"] for r in sites}
    permanence_names = {}
    for r in permanences:
        days = [WEEKDAYS.get(d, d) for d in r["weekdays"]]
        when = " et ".join([", ".join(days[:-1]), days[-1]] if len(days) > 1 else days)
        site = site_names.get(r["site"], r["site"])
        permanence_names[r["id"]] = f"{site}, {'camion du' if r['mobile'] else 'le'} {when}"
    return {
        "site": site_names, "permanence": permanence_names, "visit": VISITS,
        "age_bracket": {**fr.AGES, "unknown": "Âge non précisé"}, "gender": fr.GENDERS,
        "need": {k: v[:1].upper() + v[1:] for k, v in fr.NEEDS.items()},
        "status": STATUSES, "target": dict(partners),
        "arrival": {**fr.ARRIVALS, "not_given": "Non précisé"},
        "signal": fr.RELAY_KINDS, "signal_answered": fr.RELAY_KINDS,
    }


def key_figures(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The figures at the top: (figure, what it counts); a hidden share is left out."""
    answers = data["answers"]
    keys = [(number(data["people"]), "personnes rencontrées"),
            (number(data["intakes"]), "contacts"),
            (number(answers["handed_off"]), "personnes orientées vers une structure, avec "
                                            "leur accord")]
    if answers["share_answered_within_deadline"] is not None:
        keys.append((number(answers["share_answered_within_deadline"], " %"),
                     "des orientations ont reçu une réponse dans le délai"))
    return keys


# --- the filters ----------------------------------------------------------------------------

@dataclass
class Filters:
    """The form as typed (`du`, `au` included, `lieu`), what is wrong with it, and the
    period it means for stats.py (`to` excluded)."""

    values: dict[str, str]
    errors: dict[str, str]
    period: dict[str, Any] | None


def filters(query: Mapping[str, str]) -> Filters:
    values = {name: query.get(name, "").strip() for name in ("du", "au", "lieu", "programme")}
    errors: dict[str, str] = {}
    days: dict[str, date | None] = {}
    for name in ("du", "au"):
        try:
            days[name] = date.fromisoformat(values[name]) if values[name] else None
        except ValueError:
            errors[name] = "Saisissez une date, par exemple 31/12/2026."
    if errors:
        return Filters(values, errors, None)
    start, last = days["du"], days["au"]
    try:
        period = stats.period(start, last + timedelta(days=1) if last else None,
                              values["lieu"] or None)
    except (ValueError, OverflowError):  # OverflowError: a date at the calendar's edge
        if last is None:
            errors["du"] = "Le premier jour ne peut pas être après aujourd'hui."
        else:
            errors["au"] = "Le dernier jour doit être le premier jour ou un jour après."
        return Filters(values, errors, None)
    values["du"] = period["from"]
    values["au"] = (date.fromisoformat(period["to"]) - timedelta(days=1)).isoformat()
    return Filters(values, errors, period)


# --- the pages ------------------------------------------------------------------------------

async def scoped(request: web.Request, chosen: Filters
                 ) -> tuple[dict[str, Any] | None, list[Programme]]:
    """The period scoped to the programmes the person's organisation reads, and those it may
    choose from; a French 403/404 page otherwise."""
    principal = await pages.require(request, SCOPE)
    wanted = chosen.values["programme"] or None
    try:
        counted, offered = await stats.programmes_of(request.app[RUNTIME].pool, principal.org,
                                                     wanted)
    except stats.NotReady as exc:
        raise pages.PageError(503, "Chiffres bientôt disponibles", "Relais termine sa mise à "
                              "jour de l'annuaire. Réessayez dans quelques secondes.") from exc
    except stats.UnknownProgramme as exc:
        raise pages.PageError(404, "Programme inconnu", "L'annuaire ne connaît pas ce "
                              "programme. Revenez aux statistiques pour en choisir un.") from exc
    except stats.NotYours as exc:
        raise pages.PageError(403, "Chiffres réservés", (
            "Votre organisation ne finance, ne coordonne ni ne mène ce programme."
            if wanted else "Votre organisation ne finance, ne coordonne ni ne mène aucun "
            "programme de cette instance. Demandez à la coordination du territoire de "
            "l'ajouter aux financeurs d'un programme.")) from exc
    period = None if chosen.period is None else stats.scoped(chosen.period, counted)
    return period, offered


@pages.page
async def statistics(request: web.Request) -> web.StreamResponse:
    pool = request.app[RUNTIME].pool
    chosen = filters(request.query)
    period, offered = await scoped(request, chosen)
    sites = await store.stats_sites(pool)
    context: dict[str, Any] = {"form": chosen.values, "errors": chosen.errors,
                               "sites": sites, "sections": SECTIONS, "programmes": offered}
    if period is None:
        return pages.render(request, "referral/stats.html", status=400, data=None, **context)
    data = await stats.compute(pool, period)
    names = category_names(*await store.stats_places(pool), await store.partner_names(pool))
    site = chosen.values["lieu"]
    return pages.render(
        request, "referral/stats.html", data=data, names=names, number=number,
        charts={key: chart(key, data[key], names[key]) for key in DIMENSIONS},
        answers=[(label, answer(data["answers"][key], unit)) for key, label, unit in ANSWERS],
        figures=[(key, stats.LABELS[key], note,
                  [(label, answer(data[key].get(name), unit)) for name, label, unit in rows])
                 for key, (rows, note) in FIGURES.items()],
        keys=key_figures(data),
        first=date.fromisoformat(chosen.values["du"]),
        last=date.fromisoformat(chosen.values["au"]),
        site_name=names["site"].get(site, site) if site else None,
        csv_link="/statistiques.csv?" + urlencode(
            {k: v for k, v in chosen.values.items() if v or k != "programme"}),
        programme_names=[g.name for g in offered
                         if g.id in (period["programmes"] or "").split(",")],
        csv_size=number(round(len(stats.to_csv(period, data).encode()) / 1024, 1),
                        " Ko"), **context)


@pages.page
async def statistics_csv(request: web.Request) -> web.StreamResponse:
    """The same file as `GET /v1/stats.csv` for the same filters, with the session."""
    chosen = filters(request.query)
    period, _ = await scoped(request, chosen)
    if period is None:
        raise pages.PageError(400, "Période incorrecte", " ".join(chosen.errors.values())
                              + " Revenez aux statistiques pour choisir la période.")
    data = await stats.compute(request.app[RUNTIME].pool, period)
    return stats.csv_response(period, data)


def routes(app: web.Application) -> None:
    pages.templates("referral", "services.referral")
    app.router.add_get("/statistiques", statistics)
    app.router.add_get("/statistiques.csv", statistics_csv)
