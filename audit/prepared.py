"""An event made ready to append: its canonical bytes, leaf hash and review terms.

Preparing costs more than storing (canonical JSON, SHA-256, the review terms), and none of it
depends on where the entry lands, so the group committer prepares each event in its caller's
thread and its single writer only assigns indexes, extends the tree and inserts rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from audit.errors import EventError
from audit.events import Event, encode
from audit.merkle import leaf_hash
from audit.terms import terms_of

__all__ = ["PreparedEvent", "prepare"]

_MINT = object()  # only `prepare` holds it, so no caller can pair a body with another hash


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """What the store writes for one event (built only by `prepare`, so always consistent)."""

    type: str
    body: bytes
    leaf_hash: bytes
    terms: tuple[str, ...]
    _mint: object = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._mint is not _MINT:
            raise TypeError("PreparedEvent is made by audit.prepared.prepare only")


def prepare(event: Event | PreparedEvent) -> PreparedEvent:
    """`event` encoded, hashed and indexed for review; EventError if it is not an Event."""
    if isinstance(event, PreparedEvent):
        return event
    if not isinstance(event, Event):
        raise EventError("only audit events can be appended")
    body = encode(event)
    return PreparedEvent(event.type, body, leaf_hash(body), tuple(terms_of(event)), _MINT)
