"""Decode what kombu and Celery store in Redis: the kit's one reader of kombu's envelope.

Pure functions, no I/O. Only JSON is decoded: the kit never unpickles what it
reads from Redis, since unpickling runs arbitrary code.

A kombu message is a JSON object {"body", "content-type", "content-encoding", "headers",
"properties"}; the body is base64 on Redis. `decode_envelope` and `decode_unacked` read a
task message whole, `decode_body` any message's body (a control command), `decode_event_body`
an event batch, `decode_result` a stored result. `envelope_ids` is the cheap one for the
spy's hot path: the task id and delivery tag, without touching the body.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
from dataclasses import dataclass
from typing import Any, NamedTuple

_JSON_TYPES = ("application/json", "application/x-json")
_PICKLE_TYPES = ("application/x-python-serialize", "application/python-pickle")


class EnvelopeError(ValueError):
    """Raised when a stored value is not a message or result the kit can decode."""


@dataclass(frozen=True)
class Envelope:
    """A Celery task message (protocol 2) as kombu stored it in Redis."""

    task_id: str | None
    task: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    embed: dict[str, Any]  # callbacks, errbacks, chain, chord
    headers: dict[str, Any]
    properties: dict[str, Any]  # correlation_id, reply_to, delivery_tag, priority…
    content_type: str
    body_encoding: str


def _load_json(raw: str | bytes, what: str) -> Any:
    """json.loads, with failures reported as EnvelopeError naming `what`."""
    try:
        return json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise EnvelopeError(f"{what} is not JSON: {exc}") from exc


def _dict_field(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """obj[name] if it is a dict, {} if absent or null; EnvelopeError otherwise."""
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EnvelopeError(f"{name!r} must be an object, got {type(value).__name__}")
    return value


def _check_content_type(content_type: str) -> None:
    """Accept JSON only; pickle gets its own message because it is the usual culprit."""
    if content_type in _JSON_TYPES:
        return
    if content_type in _PICKLE_TYPES:
        raise EnvelopeError(
            f"content type {content_type!r} is pickle: celery-xray refuses to unpickle "
            "(it runs code); configure Celery with task_serializer='json'"
        )
    raise EnvelopeError(f"content type {content_type!r} is not supported: only JSON is")


def _body_bytes(message: dict[str, Any], body_encoding: str) -> bytes:
    """The raw body bytes, undoing kombu's body_encoding (base64 on Redis)."""
    body = message.get("body")
    if not isinstance(body, str):
        raise EnvelopeError(f"'body' must be a string, got {type(body).__name__}")
    if body_encoding == "base64":
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EnvelopeError(f"body is not valid base64: {exc}") from exc
    if body_encoding in ("", "utf-8"):
        return body.encode("utf-8")
    raise EnvelopeError(f"unknown body_encoding {body_encoding!r}: expected 'base64'")


def _decode_body(message: dict[str, Any]) -> tuple[Any, str, str]:
    """(decoded body, content type, body_encoding) of a kombu message dict."""
    content_type = str(message.get("content-type", ""))
    _check_content_type(content_type)
    body_encoding = str(_dict_field(message, "properties").get("body_encoding") or "")
    raw = _body_bytes(message, body_encoding)
    charset = str(message.get("content-encoding") or "utf-8")
    try:
        text = raw.decode(codecs.lookup(charset).name)
    except (LookupError, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"body cannot be decoded as {charset!r}: {exc}") from exc
    return _load_json(text, "message body"), content_type, body_encoding


def _require_dict(obj: Any, what: str) -> dict[str, Any]:
    """obj itself when it is a dict; EnvelopeError naming `what` otherwise."""
    if not isinstance(obj, dict):
        raise EnvelopeError(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def _envelope_from_dict(message: dict[str, Any]) -> Envelope:
    """Build an Envelope from kombu's message dict (already JSON-decoded)."""
    body, content_type, body_encoding = _decode_body(message)
    # Protocol 2 bodies are [args, kwargs, embed]; protocol 1 put everything in a dict.
    if not (isinstance(body, list) and len(body) == 3):
        raise EnvelopeError("body is not a protocol 2 [args, kwargs, embed] list")
    args, kwargs, embed = body
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise EnvelopeError("body must hold a list of args and a dict of kwargs")
    headers = _dict_field(message, "headers")
    return Envelope(
        task_id=headers.get("id"),
        task=headers.get("task"),
        args=args,
        kwargs=kwargs,
        embed=embed if isinstance(embed, dict) else {},
        headers=headers,
        properties=_dict_field(message, "properties"),
        content_type=content_type,
        body_encoding=body_encoding,
    )


def decode_envelope(raw: str) -> Envelope:
    """Decode a task message pushed with LPUSH. Raises EnvelopeError if it is not one."""
    return _envelope_from_dict(_require_dict(_load_json(raw, "message"), "message"))


def decode_unacked(raw: str) -> tuple[Envelope, str, str]:
    """Decode an `unacked` hash value into (envelope, exchange, routing_key)."""
    entry = _load_json(raw, "unacked entry")
    if not (isinstance(entry, list) and len(entry) == 3):
        raise EnvelopeError("unacked entry must be a [message, exchange, routing_key] list")
    message, exchange, routing_key = entry
    envelope = _envelope_from_dict(_require_dict(message, "unacked message"))
    return envelope, str(exchange), str(routing_key)


def decode_result(raw: str) -> dict[str, Any]:
    """Decode a celery-task-meta-<id> value; it must be a JSON object with a status."""
    meta = _require_dict(_load_json(raw, "result"), "result")
    if "status" not in meta:
        raise EnvelopeError("result has no 'status': not a task result")
    return meta


def decode_body(raw: str, what: str = "message") -> Any:
    """The decoded body of any kombu message (a control command, an event, a task);
    EnvelopeError naming `what` when `raw` is not a message."""
    body, _, _ = _decode_body(_require_dict(_load_json(raw, what), what))
    return body


def decode_event_body(raw: str) -> list[dict[str, Any]]:
    """Decode an event PUBLISH payload into a list of event dicts (task.multi batches)."""
    body = decode_body(raw, "event message")
    events = body if isinstance(body, list) else [body]
    return [_require_dict(event, "event") for event in events]


class EnvelopeIds(NamedTuple):
    """What names a message without decoding its body: headers.id, properties.delivery_tag."""

    task_id: str | None
    delivery_tag: str | None


_NO_IDS = EnvelopeIds(None, None)


def _str_at(obj: dict[str, Any], section: str, name: str) -> str | None:
    """obj[section][name] if it is a non-empty string, else None."""
    inner = obj.get(section)
    value = inner.get(name) if isinstance(inner, dict) else None
    return value if isinstance(value, str) and value else None


def envelope_ids(raw: str) -> EnvelopeIds:
    """The task id and delivery tag of a kombu message, or of an `unacked` entry's message.

    Cheap (one json.loads, the body left alone) and never raises: the spy asks it of every
    LPUSH and HSET unacked it sees; (None, None) for anything that is not a message.
    """
    try:
        obj = json.loads(raw)
    except (ValueError, TypeError, RecursionError):  # RecursionError: absurdly nested JSON
        return _NO_IDS
    if isinstance(obj, list) and obj:
        obj = obj[0]  # unacked values are [message, exchange, routing_key]
    if not isinstance(obj, dict):
        return _NO_IDS
    return EnvelopeIds(_str_at(obj, "headers", "id"), _str_at(obj, "properties", "delivery_tag"))


def task_id_of_envelope(raw: str) -> str | None:
    """headers.id of a kombu message (or of an unacked entry's), None if not one."""
    return envelope_ids(raw).task_id


def summarise(env: Envelope) -> dict[str, object]:
    """A flat dict for a table row; missing fields are None."""
    delivery_info = env.properties.get("delivery_info")
    routing_key = delivery_info.get("routing_key") if isinstance(delivery_info, dict) else None
    return {
        "task": env.task,
        "id": env.task_id,
        "args": env.args,
        "kwargs": env.kwargs,
        "retries": env.headers.get("retries"),
        "eta": env.headers.get("eta"),
        "root_id": env.headers.get("root_id"),
        "parent_id": env.headers.get("parent_id"),
        "origin": env.headers.get("origin"),
        "priority": env.properties.get("priority"),
        "routing_key": routing_key,
    }


def decode_control(raw: str) -> dict[str, Any]:
    """Decode a control command PUBLISHed on the pidbox channel (`revoke`, `ping`, `inspect`
    methods…): {method, arguments, destination, reply_to, ticket}, celery/app/control.py."""
    command = _require_dict(decode_body(raw, "control message"), "control command")
    if "method" not in command:
        raise EnvelopeError("control command has no 'method'")
    return command
