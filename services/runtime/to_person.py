"""A message to the person met (their receipt, their card), by email or SMS, at the address or
number they gave: read from the identity vault as the signed-in counsellor (`peers.person`,
so the read is logged like any other), sent at once while the person is still there (SMTP,
`mail.send_one`; or the SMS gateway, `RELAIS_SMS_URL`): the counsellor sees whether it left,
and the receipt or card is on the screen anyway. The address or number is never logged; the
page shows it masked."""

from __future__ import annotations

import re
import uuid
from typing import Literal

import aiohttp
import aiosmtplib
from aiohttp import web

from schemas.api import Identity
from services.runtime import mail, peers
from services.runtime.app import RUNTIME
from services.runtime.logging import get_logger

log = get_logger("relais.to_person")
Channel = Literal["courriel", "sms"]
TIMEOUT = aiohttp.ClientTimeout(total=10)


def masked_email(address: str) -> str:
    """`l***@example.org`: enough for the person to know it is theirs."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def international(phone: str) -> str | None:
    """A French mobile number as a gateway expects it (`+33612345678`); None for another."""
    digits = re.sub(r"[\s.\-()]", "", phone)
    if re.fullmatch(r"0[67]\d{8}", digits):
        return "+33" + digits[1:]
    if re.fullmatch(r"\+33[67]\d{8}", digits):
        return digits
    return None


def masked_phone(number: str) -> str:
    return f"{number[:4]} ** ** ** {number[-2:]}"


async def send(request: web.Request, person_id: uuid.UUID, channel: Channel, subject: str,
               body: str, short: str, what: str) -> tuple[bool, str | None]:
    """Whether it left, and where to (masked); (False, None) when the person gave no address
    (or no mobile number) the caller may read. `short` is the SMS's text."""
    person = await peers.person(request, person_id)
    identity = person.identity if person else None
    if channel == "sms":
        return await _sms(request, identity, short, what)
    address = str(identity.email) if identity and identity.email else None
    if not address:
        return False, None
    try:
        await mail.send_one(request.app[RUNTIME].settings, address, subject, body)
    except (aiosmtplib.SMTPException, OSError) as failed:
        log.warning("person_message_failed", what=what, channel=channel,
                    error=type(failed).__name__)
        return False, masked_email(address)
    log.info("person_message_sent", what=what, channel=channel)
    return True, masked_email(address)


async def _sms(request: web.Request, identity: Identity | None, text: str,
               what: str) -> tuple[bool, str | None]:
    settings = request.app[RUNTIME].settings
    number = international(identity.phone) if identity and identity.phone else None
    if number is None:
        return False, None
    if not settings.sms_url:
        log.warning("person_message_failed", what=what, channel="sms", error="no_gateway")
        return False, masked_phone(number)
    token = settings.sms_token.get_secret_value() if settings.sms_token else ""
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.post(
                settings.sms_url, json={"to": number, "text": text},
                headers={"Authorization": f"Bearer {token}"}) as answer:
            if not 200 <= answer.status < 300:
                raise aiohttp.ClientResponseError(answer.request_info, (), status=answer.status)
    except (aiohttp.ClientError, TimeoutError) as failed:
        log.warning("person_message_failed", what=what, channel="sms",
                    error=type(failed).__name__)
        return False, masked_phone(number)
    log.info("person_message_sent", what=what, channel="sms")
    return True, masked_phone(number)
