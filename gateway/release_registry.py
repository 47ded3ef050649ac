"""Which release function handles which template kind (see `gateway.releases`)."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.release_aggregate import release_aggregate
from gateway.release_dp import release_dp
from gateway.releases import Release
from gateway.specs import TemplateKindName

RELEASES: Mapping[TemplateKindName, Release] = {
    TemplateKindName.AGGREGATE: release_aggregate,
    TemplateKindName.DP: release_dp,
}
