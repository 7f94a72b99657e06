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
    """Decode one stored event body, with a clear error for unknown types or broken bodies
    (whatever the body holds: this never raises anything but :class:`DecodeError`)."""
    try:
        return _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise DecodeError(_explain(body, exc)) from None


_TOO_DEEP = "stored event nests deeper than evq reads (a value over ~1,000 levels deep)"


def _explain(body: bytes | str, exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return _TOO_DEEP
    try:
        obj = msgspec.json.decode(body)
    except RecursionError:
        return _TOO_DEEP
    except msgspec.DecodeError:
        return f"stored event is not valid JSON: {exc}"
    if not isinstance(obj, dict):
        return f"stored event is not a JSON object: {exc}"
    kind = obj.get("type")
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
