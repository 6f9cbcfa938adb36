"""JSON codecs for the public messages (orjson), and dead-letter construction."""

from __future__ import annotations

import base64
from datetime import datetime

import orjson
from pydantic import BaseModel

from airgrid.models.dlq import DeadLetter, Origin
from airgrid.models.feedback import Feedback, FeedbackRejected

PAYLOAD_LIMIT = 16_384
# Keys airgrid writes are station or task ids (at most ~70 bytes); a letter keeps at most this
# much of a message's key, as its own key and in its body: a key of most of a megabyte, copied
# whole (and in the body as replacement characters of three bytes each), made a letter larger
# than the broker takes, which could not be sent and stopped the worker on that message for good.
KEY_LIMIT = 1024


def encode(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="json", exclude_none=False))


def text_of(raw: bytes | None) -> tuple[str, str | None]:
    """Readable text of arbitrary bytes, and base64 of them when they are not UTF-8."""
    if raw is None:
        return "", None
    clipped = raw[:PAYLOAD_LIMIT]
    try:
        return clipped.decode("utf-8"), None
    except UnicodeDecodeError:
        return clipped.decode("utf-8", errors="replace"), base64.b64encode(clipped).decode()


def letter_key(key: bytes | None) -> bytes | None:
    """The key a dead letter or rejection is sent under: the original one, clipped to KEY_LIMIT."""
    return key if key is None or len(key) <= KEY_LIMIT else key[:KEY_LIMIT]


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (pydantic's run over several), or its type."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def dead_letter(
    *,
    reason: str,
    code: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    at: datetime,
) -> DeadLetter:
    payload, b64 = text_of(value)
    return DeadLetter(
        reason=reason,
        reason_code=code,
        origin=Origin(topic=topic, partition=partition, offset=offset),
        key=key[:KEY_LIMIT].decode("utf-8", errors="replace") if key is not None else None,
        payload=payload,
        payload_b64=b64,
        at=at,
    )


def rejection(
    *,
    reason: str,
    code: str,
    at: datetime,
    origin: Origin | None,
    payload: bytes | None = None,
    feedback: Feedback | None = None,
) -> FeedbackRejected:
    """Feedback refused, with what it said: its raw bytes if given, else the parsed feedback
    re-encoded; the feedback's ids when it could be read."""
    text = text_of(payload)[0] if payload is not None else (feedback.model_dump_json() if feedback else "")
    return FeedbackRejected(
        reason=reason,
        reason_code=code,
        feedback_id=feedback.feedback_id if feedback else None,
        task_id=feedback.task_id if feedback else None,
        origin=origin,
        payload=text,
        at=at,
    )
