"""The cycle context from reference data: the currency's rails, each participant's rail
and cap, the identities; the worker's contexts take the version in force, a replay's
the version each cycle's report names."""

from __future__ import annotations

import pytest
import yaml

from clearing_core.cycle.context import (
    ContextsInForce,
    CycleContext,
    RailInfo,
    VersionedContexts,
    cycle_context,
)
from clearing_core.cycle.settlement import RailSpec
from clearing_core.refdata import RefdataError, ReferenceData, load_refdata
from tests.conftest import REPO

SOURCE = (REPO / "tests" / "data" / "pipeline-refdata.yaml").read_text()
DC, SOLAR, GPU = "DC-SHENZHEN-01", "SOLAR-QINGHAI-07", "GPUCLOUD-SG-02"
DC_LEI = "3358008QKDTD2YW4OZ72"


def refdata(dc_cap: int | None = 50_000) -> ReferenceData:
    """The pipeline's reference data, DC with an LEI and (unless None) a CNH cap."""
    document = yaml.safe_load(SOURCE)
    for participant in document["participants"]:
        if participant["participant_id"] == DC:
            participant["lei"] = DC_LEI
            if dc_cap is not None:
                participant["accounts"][0]["net_debit_cap_minor"] = dc_cap
    return load_refdata(yaml.safe_dump(document))


def test_the_context_of_a_currency() -> None:
    data = refdata()
    assert cycle_context(data, "CNH") == CycleContext(
        currency="CNH", iso_currency="CNY", currency_exponent=2,
        rails={
            "cnh-stable": RailInfo(RailSpec("cnh-stable", "direct", 2, 6), "TOKEN_BATCH", "CNHT"),
            "cnh-cips": RailInfo(RailSpec("cnh-cips", "hub", 2, 2), "ISO20022", None),
        },
        rail_of={SOLAR: "cnh-stable", DC: "cnh-cips", "LEASECO-HK-01": "cnh-stable"},
        cap_minor={DC: 50_000},
        identities={
            SOLAR: ("ABCDCNBJ", None), DC: ("ABCDCNBJ", DC_LEI),
            "LEASECO-HK-01": ("ABCDHKHH", None), GPU: ("ABCDSGSG", None),
        },
        refdata_digest=data.digest,
    )  # fmt: skip


def test_only_the_currency_s_rails_and_accounts() -> None:
    usd = cycle_context(refdata(), "USD")
    assert list(usd.rails) == ["usd-swift"]
    assert usd.rail_of == {DC: "usd-swift", GPU: "usd-swift"}
    assert usd.cap_minor == {}  # DC's cap is on its CNH account
    assert len(usd.identities) == 4  # every participant's, for the exports


def test_an_unknown_currency_is_refused() -> None:
    with pytest.raises(RefdataError, match="unknown currency 'EUR'"):
        cycle_context(refdata(), "EUR")


def test_the_worker_closes_with_the_version_in_force_and_remembers_it() -> None:
    first, second = refdata(), refdata(dc_cap=None)
    current = [first]
    contexts = ContextsInForce(lambda: current[-1])
    assert contexts("CNH", 1).cap_minor == {DC: 50_000}
    current.append(second)
    assert contexts("CNH", 2).cap_minor == {}
    assert contexts.used == {first.digest: first, second.digest: second}


def test_a_replay_closes_each_cycle_with_the_version_its_report_names() -> None:
    old, latest = refdata(), refdata(dc_cap=None)
    digests = {("CNH", 1): old.digest, ("CNH", 2): "never-recorded", ("CNH", 3): None}
    contexts = VersionedContexts(latest, {old.digest: old}, digests)
    assert contexts("CNH", 1).refdata_digest == old.digest
    assert contexts("CNH", 2).refdata_digest == latest.digest  # version unknown: the latest
    assert contexts("CNH", 3).refdata_digest == latest.digest  # report without a digest
    assert contexts("CNH", 4).refdata_digest == latest.digest  # no report yet
    assert contexts.unknown == ["CNH-00000002"]
