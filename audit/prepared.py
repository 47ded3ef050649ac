"""An event made ready to append: its canonical bytes and leaf hash.

Preparing (canonical JSON, SHA-256) does not depend on where the entry lands; the writer then only
assigns indexes, extends the tree and inserts rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from audit.errors import EventError
from audit.events import Event, encode
from audit.merkle import leaf_hash

__all__ = ["PreparedEvent", "prepare"]

_MINT = object()  # only `prepare` holds it, so no caller can pair a body with another hash


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """What the store writes for one event (built only by `prepare`, so always consistent)."""

    type: str
    body: bytes
    leaf_hash: bytes
    _mint: object = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._mint is not _MINT:
            raise TypeError("PreparedEvent is made by audit.prepared.prepare only")


def prepare(event: Event | PreparedEvent) -> PreparedEvent:
    """`event` encoded and hashed; EventError if it is not an Event."""
    if isinstance(event, PreparedEvent):
        return event
    if not isinstance(event, Event):
        raise EventError("only audit events can be appended")
    body = encode(event)
    return PreparedEvent(event.type, body, leaf_hash(body), _MINT)
