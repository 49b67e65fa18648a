"""What one currency's close takes from the reference data: its rails, which rail each
participant settles on, the net debit caps and the identities the exports name.

Why built here and taken at close time: a cycle closes with the reference data in
force when its marker is read, and the netting worker and ``clearing replay`` must
build the same context from the same version, or a replay would re-net a cycle with
other rails or caps than the worker did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import assert_never

from clearing_core import refdata as rd
from clearing_core.cycle.settlement import RailSpec
from clearing_core.encoding.records import ExportFormat
from clearing_core.ids import cycle_id
from clearing_core.refdata import ReferenceData


@dataclass(frozen=True)
class RailInfo:
    """A rail as the cycle needs it: settlement spec plus export fields."""

    spec: RailSpec
    export_format: ExportFormat
    token_symbol: str | None


@dataclass(frozen=True)
class CycleContext:
    """The reference data one currency's close needs, taken at close time."""

    currency: str
    iso_currency: str
    currency_exponent: int
    rails: Mapping[str, RailInfo]
    rail_of: Mapping[str, str]
    cap_minor: Mapping[str, int]
    identities: Mapping[str, tuple[str | None, str | None]]
    refdata_digest: str | None = None


def cycle_context(refdata: ReferenceData, currency: str) -> CycleContext:
    """What one currency's close needs from the reference data: the currency's rails
    (HUB rails settle through the house, the others directly), the rail and net debit
    cap of each participant with an account in the currency, and every participant's
    (BIC, LEI)."""
    ccy = refdata.currency(currency)
    rails = {
        rail.rail_id: RailInfo(
            spec=RailSpec(rail.rail_id, "hub" if rail.model == "HUB" else "direct",
                          ccy.minor_exponent, rail.decimals),
            export_format=_export_format(rail.export_format), token_symbol=rail.token_symbol,
        )
        for rail in refdata.rails_for_currency(currency)
    }  # fmt: skip
    rail_of, caps, identities = {}, {}, {}
    for participant in refdata.participants.values():
        account = refdata.account(participant.participant_id, currency)
        identities[participant.participant_id] = (participant.bic, participant.lei)
        if account is None:
            continue
        rail_of[participant.participant_id] = account.rail_id
        if account.net_debit_cap_minor is not None:
            caps[participant.participant_id] = account.net_debit_cap_minor
    return CycleContext(
        currency=currency, iso_currency=ccy.iso_code, currency_exponent=ccy.minor_exponent,
        rails=rails, rail_of=rail_of, cap_minor=caps, identities=identities,
        refdata_digest=refdata.digest,
    )  # fmt: skip


def _export_format(value: rd.ExportFormat) -> ExportFormat:
    """The reference data's enum member as the batch record's symbol (the same text)."""
    if value is rd.ExportFormat.ISO20022:
        return "ISO20022"
    if value is rd.ExportFormat.TOKEN_BATCH:
        return "TOKEN_BATCH"
    assert_never(value)


@dataclass
class ContextsInForce:
    """The netting worker's contexts: every close takes the reference data in force
    (``current()``, the latest version read) and remembers which version that was, so
    the cycle's transaction can record the version where a replay will find it."""

    current: Callable[[], ReferenceData]
    used: dict[str, ReferenceData] = field(default_factory=dict)

    def __call__(self, currency: str, cycle_seq: int) -> CycleContext:
        refdata = self.current()
        self.used[refdata.digest] = refdata
        return cycle_context(refdata, currency)


class VersionedContexts:
    """A replay's contexts: each cycle's from the version its report names (by digest);
    the latest where the cycle has no report yet, or where its version was never
    recorded (those cycles are listed in ``unknown``)."""

    def __init__(self, latest: ReferenceData, versions: Mapping[str, ReferenceData],
                 digests: Mapping[tuple[str, int], str | None]) -> None:  # fmt: skip
        self.latest, self.versions, self.digests = latest, versions, digests
        self.unknown: list[str] = []

    def __call__(self, currency: str, cycle_seq: int) -> CycleContext:
        digest = self.digests.get((currency, cycle_seq))
        refdata = self.versions.get(digest) if digest else self.latest
        if refdata is None:
            self.unknown.append(cycle_id(currency, cycle_seq))
            refdata = self.latest
        return cycle_context(refdata, currency)
