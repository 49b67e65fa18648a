"""Which ingest rejections fall in a cycle, for its report's rejection count.

A cycle's window runs from the currency's previous close (exclusive) to its own close
(inclusive), both the markers' log times, so consecutive cycles never count one
rejection twice and none between them goes uncounted. A currency's first cycle has no
previous close: it looks back a day. A rejection falls in the window by the time its
source record was rejected (``rejected_at``), not by when the dead letter was read:
the report says what the clearing house knew at close.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from clearing_core.cycle.ledger import CurrencyLedger
from clearing_core.encoding.records import Rejected

FIRST_CYCLE_LOOKBACK = timedelta(days=1)


@dataclass(frozen=True)
class RejectionWindow:
    """The rejections of ``currency`` rejected in ``(since, until]`` count in a cycle."""

    currency: str
    since: datetime
    until: datetime

    def covers(self, rejected: Rejected) -> bool:
        """Whether a ``Rejected`` record counts in this cycle."""
        return (
            rejected.get("currency") == self.currency
            and self.since < rejected["rejected_at"] <= self.until
        )


def rejection_window(ledger: CurrencyLedger, closed_at: datetime) -> RejectionWindow:
    """The window of the cycle that ``ledger`` is closing at ``closed_at``: from the
    previous close (a closed ledger's ``opened_at``), else a day back."""
    previous_close = ledger.opened_at if ledger.cycle_seq > 0 else None
    since = previous_close or closed_at - FIRST_CYCLE_LOOKBACK
    return RejectionWindow(ledger.currency, since, closed_at)
