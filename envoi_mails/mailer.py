"""Sending one mail over SMTP with smtplib, and telling retryable failures from final ones."""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

# Deliberately simple: one @, a non-empty local part, a dotted domain, no spaces or brackets.
# Enough to refuse typos at once instead of bothering an SMTP server.
_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# RFC 5321 4.5.3.1: a path is at most 256 octets with its angle brackets, so an address
# at most 254; a local part at most 64. Mail systems refuse longer ones: so do we, at once.
MAX_ADDRESS = 254
MAX_LOCAL_PART = 64
SHOWN_CHARS = 80  # of a refused value, in an error message (the rest is counted, not shown)


class InvalidAddress(ValueError):
    """The recipient is not a mail address: final, never retried."""


class SmtpUnavailable(ConnectionError):
    """The SMTP server could not be reached or refused us for now: worth retrying."""


class MailRejected(RuntimeError):
    """The SMTP server answered and refused this mail for good: final, never retried."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    timeout: float = 5.0

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def validate_address(address: object) -> str:
    """Return the address, stripped, or raise :class:`InvalidAddress` saying why."""
    if not isinstance(address, str):
        raise InvalidAddress(f"recipient must be a string, got {type(address).__name__}")
    candidate = address.strip()
    local = candidate.rpartition("@")[0]
    preview = shown(candidate, counted=False)
    if len(candidate) > MAX_ADDRESS:
        raise InvalidAddress(
            f"{preview} is {len(candidate)} characters long: an e-mail address "
            f"has at most {MAX_ADDRESS} (RFC 5321)"
        )
    if len(local) > MAX_LOCAL_PART:
        raise InvalidAddress(
            f"{preview}: the part before @ is {len(local)} characters long, "
            f"at most {MAX_LOCAL_PART} (RFC 5321)"
        )
    if not _ADDRESS.match(candidate):
        raise InvalidAddress(
            f"{shown(address)} is not a valid e-mail address (expected name@domain.tld)"
        )
    return candidate


def shown(value: object, limit: int = SHOWN_CHARS, *, counted: bool = True) -> str:
    """repr(value) for an error message, cut to `limit` characters (and how many there were,
    unless `counted` is off): a 10 MB argument must not come back in the error, the result
    key, the log and the trace."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…" + (f" ({len(text)} characters)" if counted else "")


def build_message(
    sender: str, recipient: str, subject: str, body: str, message_id: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    # The Message-ID carries the task id, so a duplicate delivery would be visible at once.
    message["Message-ID"] = message_id
    message.set_content(body)
    return message


def send(message: EmailMessage, server: SmtpServer) -> None:
    """Deliver `message` through `server`.

    Raises SmtpUnavailable when nothing was delivered and a later try may work (connection
    refused, timeout, 4xx), MailRejected when the server refused the mail for good (5xx).
    Once the server has accepted the DATA, the mail counts as sent: a failure while closing
    the connection must not lead to a retry, which would send it twice.
    """
    try:
        client = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise SmtpUnavailable(f"SMTP server {server} unreachable: {_reason(exc)}") from exc
    try:
        client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = shown(exc.recipients)
        raise MailRejected(f"SMTP server {server} refused the recipient: {refused}") from exc
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:
            raise SmtpUnavailable(f"SMTP server {server} said try later: {exc.smtp_code}") from exc
        raise MailRejected(f"SMTP server {server} refused the mail: {exc.smtp_code}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        reason = _reason(exc)
        raise SmtpUnavailable(f"SMTP server {server} dropped the connection: {reason}") from exc
    # The mail was accepted: a failing QUIT changes nothing (see the docstring).
    with contextlib.suppress(OSError, smtplib.SMTPException):
        client.quit()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return reason if len(reason) <= SHOWN_CHARS else shown(reason)
