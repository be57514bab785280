"""Conversions between protobuf messages and plain Python values, shared by every layer.

google.protobuf.Struct keeps every number as a double; JSON users wrote `30`, not
`30.0`, so integral numbers come back as ints.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import ListValue, Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["to_struct", "from_struct", "from_value", "to_timestamp", "from_timestamp", "message_to_dict", "gather"]


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def to_struct(value: dict[str, Any] | None) -> Struct:
    struct = Struct()
    if value:
        struct.update(value)
    return struct


def from_struct(struct: Struct) -> dict[str, Any]:
    if not struct.fields:  # most requests leave their Structs empty
        return {}
    return _integral(json_format.MessageToDict(struct))


def from_value(value: Value | ListValue) -> Any:
    return _integral(json_format.MessageToDict(value))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: A Timestamp's valid seconds: 0001-01-01 to 9999-12-31, as protobuf defines it.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def to_timestamp(moment: datetime | None) -> Timestamp | None:
    """A moment as a Timestamp (one without a zone is UTC). Timestamp.FromDatetime does
    the same through a time tuple, several times slower: a reply of runs holds many."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    since = moment - _EPOCH  # microseconds in [0, 10**6), days signed: nanos stay non-negative
    return Timestamp(seconds=since.days * 86400 + since.seconds, nanos=since.microseconds * 1000)


def from_timestamp(stamp: Timestamp) -> datetime:
    """A Timestamp as an aware UTC moment; ValueError for one outside protobuf's range (as
    Timestamp.ToDatetime, several times slower, raises)."""
    if not _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS or not 0 <= stamp.nanos < 1_000_000_000:
        raise ValueError(f"not a valid Timestamp: seconds {stamp.seconds}, nanos {stamp.nanos}")
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


def message_to_dict(message: Message) -> dict[str, Any]:
    """proto3 JSON with the proto field names and every field, in declaration order; unset
    optional fields are null."""
    raw = _integral(
        json_format.MessageToDict(
            message,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
    )
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        if field.name not in raw:
            out[field.name] = None
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not _is_well_known(field):
            if field.is_repeated and not field.message_type.GetOptions().map_entry:
                out[field.name] = [message_to_dict(item) for item in getattr(message, field.name)]
            elif not field.is_repeated:
                out[field.name] = message_to_dict(getattr(message, field.name))
            else:
                out[field.name] = raw[field.name]
        else:
            out[field.name] = raw[field.name]
    return out


def _is_well_known(field: FieldDescriptor) -> bool:
    return field.message_type.full_name.startswith("google.protobuf.")


M = TypeVar("M", bound=Message)
#: A batch holds at most this many bytes (or its first message alone, when that is larger)
#: and this many messages: far under any message size limit.
BATCH_BYTES = 64 * 1024
BATCH_MESSAGES = 256


def gather(first: M, queue: asyncio.Queue[M | None]) -> list[M]:
    """`first` and the messages queued behind it, to be sent as one: a stream write costs
    about as much as the work a message asks for, so under load both sides of the stream
    send what they have queued together. A message that would overflow the batch, and the
    end marker (None), stay queued for the next write."""
    messages = [first]
    size = first.ByteSize()
    waiting = queue._queue  # type: ignore[attr-defined]  # the queue's deque: peeked, not taken
    while waiting and len(messages) < BATCH_MESSAGES:
        message = waiting[0]
        if message is None:
            break
        size += message.ByteSize()
        if size > BATCH_BYTES:
            break
        messages.append(queue.get_nowait())
    return messages
