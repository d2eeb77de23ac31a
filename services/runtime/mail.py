"""Sending email over SMTP (aiosmtplib), with the settings' server, STARTTLS and login: the
notify service's messages, and the invitations of personal accounts."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from services.runtime.settings import Settings


class Mailer:
    """One SMTP session reused across sends, opened again when it dropped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.smtp: aiosmtplib.SMTP | None = None

    async def session(self) -> aiosmtplib.SMTP:
        if self.smtp is None or not self.smtp.is_connected:
            s = self.settings
            smtp = aiosmtplib.SMTP(hostname=s.smtp_host, port=s.smtp_port,
                                   start_tls=s.smtp_starttls, username=s.smtp_username,
                                   password=s.smtp_password, timeout=s.smtp_timeout,
                                   cert_bundle=str(s.smtp_ca_file) if s.smtp_ca_file else None)
            await smtp.connect()
            self.smtp = smtp
        return self.smtp

    async def close(self) -> None:
        if self.smtp is not None and self.smtp.is_connected:
            try:
                await self.smtp.quit()
            except aiosmtplib.SMTPException:
                self.smtp.close()


async def send_one(settings: Settings, to: str, subject: str, body: str) -> None:
    """One message, in a session of its own (raises aiosmtplib.SMTPException or OSError)."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = settings.smtp_from, to, subject
    message.set_content(body)
    mailer = Mailer(settings)
    try:
        await (await mailer.session()).send_message(message)
    finally:
        await mailer.close()
