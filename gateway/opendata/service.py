"""The open API's state on one replica: response cache, API keys, rate limits, read counts,
usage figures. Built by `create_app`, closed (read counts written) when the app stops."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.context import Gateway
from gateway.opendata.apikeys import ApiKey, KeyCache
from gateway.opendata.cache import OpenCache
from gateway.opendata.counting import OpenReads
from gateway.opendata.limits import RateLimiter
from gateway.opendata.usage import Usage

ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Caller:
    holder: str  # an API key's holder, or "anonymous"
    bucket: str
    per_minute: int


@dataclass
class OpenService:
    gw: Gateway
    cache: OpenCache
    keys: KeyCache
    reads: OpenReads
    usage: Usage
    limiter: RateLimiter = field(default_factory=RateLimiter)

    @classmethod
    def build(cls, gw: Gateway) -> OpenService:
        return cls(
            gw=gw,
            cache=OpenCache(gw),
            keys=KeyCache(gw.db),
            reads=OpenReads(gw.audit),
            usage=Usage(gw),
        )

    def caller(self, key: ApiKey | None, client: str) -> Caller:
        if key is None:
            per_minute = self.gw.settings.open_anonymous_per_minute
            return Caller(ANONYMOUS, f"anon:{client}", per_minute)
        return Caller(key.holder, f"key:{key.id}", key.per_minute)

    def changed(self) -> None:
        """Something was published or unpublished here: serve it now."""
        self.cache.invalidate()

    def close(self) -> None:
        self.reads.close()
