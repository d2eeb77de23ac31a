"""An email to the person met (their receipt, their card), at the address they gave: read
from the identity vault as the signed-in counsellor (`peers.person`, so the read is logged
like any other), sent at once over SMTP (`mail.send_one`) while the person is still there:
the counsellor sees whether it left, and the receipt or card is on the screen anyway. The
address is never logged; the page shows it masked."""

from __future__ import annotations

import uuid

import aiosmtplib
from aiohttp import web

from services.runtime import mail, peers
from services.runtime.app import RUNTIME
from services.runtime.logging import get_logger

log = get_logger("relais.person_mail")


def masked(address: str) -> str:
    """`l***@example.org`: enough for the person to know it is theirs."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


async def send(request: web.Request, person_id: uuid.UUID, subject: str,
               body: str, what: str) -> tuple[bool, str | None]:
    """Whether it left, and to which address (masked); (False, None) when the person gave
    no email address (or the caller may not read it)."""
    person = await peers.person(request, person_id)
    address = person.identity.email if person and person.identity else None
    if not address:
        return False, None
    try:
        await mail.send_one(request.app[RUNTIME].settings, str(address), subject, body)
    except (aiosmtplib.SMTPException, OSError) as failed:
        log.warning("person_mail_failed", what=what, error=type(failed).__name__)
        return False, masked(str(address))
    log.info("person_mail_sent", what=what)
    return True, masked(str(address))
