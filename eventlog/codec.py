"""Encoding and decoding of events: one module-level msgspec encoder and decoder."""

from __future__ import annotations

import msgspec

from .errors import DecodeError
from .events import EVENT_TYPES, AnyEvent

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)

encode = _encoder.encode


class Record(msgspec.Struct, frozen=True):
    """An event as stored: its position ``seq`` in the log and the event itself."""

    seq: int
    event: AnyEvent


def decode(body: bytes | str) -> AnyEvent:
    """Decode one stored event body, with a clear error for unknown types or broken bodies."""
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise DecodeError(_explain(body, exc)) from None


def _explain(body: bytes | str, exc: Exception) -> str:
    try:
        kind = msgspec.json.decode(body).get("type")
    except Exception:
        return f"stored event is not valid JSON: {exc}"
    if kind not in EVENT_TYPES:
        return (
            f"unknown event type {kind!r}: this log was written by a newer evq "
            "(upgrade evq to read it)"
        )
    return f"cannot decode {kind} event: {exc}"


def to_json_obj(record: Record) -> dict:
    """The public JSON shape of a stored event: ``seq``, ``ts``, ``type``, ``job_id`` and fields."""
    obj = msgspec.json.decode(_encoder.encode(record.event))
    return {"seq": record.seq, "ts": obj.pop("ts"), "type": obj.pop("type"),
            "job_id": obj.pop("job_id"), **obj}
