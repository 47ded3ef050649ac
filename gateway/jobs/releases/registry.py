"""Which release function handles which template kind (see `gateway.jobs.releases.base`)."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.catalogue.documents import TemplateKindName
from gateway.jobs.releases.aggregate import release_aggregate
from gateway.jobs.releases.base import Release
from gateway.jobs.releases.dp import release_dp
from gateway.jobs.releases.lists import release_list
from gateway.jobs.releases.verify import release_verify

RELEASES: Mapping[TemplateKindName, Release] = {
    TemplateKindName.AGGREGATE: release_aggregate,
    TemplateKindName.DP: release_dp,
    TemplateKindName.VERIFY: release_verify,
    TemplateKindName.LIST: release_list,
}
