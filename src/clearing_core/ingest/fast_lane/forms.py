"""Canonical forms of the fast lane's rows, by column, where they are not the rows.

Why: once the readers have upgraded to a v2 and keep v1 as a writer, a current (v2)
record whose added fields are null has the v1 form (``clearing_core.encoding.canonical``).
``Codec.canonical`` makes it with fastavro, about 6 µs an event, more than the lane
spends on one. Where the older version is the current one less its last fields (as
every version added so far), the lane's columnar decoder tells which rows leave them
null: the v2 body less one byte per such field, read as v1 in columns, proves it is
that row's v1 record, a whole run at once. A row not proved so takes
``Codec.canonical``, which gives the same form. The records step digests these
forms (``records.IngestResult.accept_run``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from clearing_core.encoding.avro_rows import OPTIONAL_STRING, RowPlan, decode_rows, pack, plan_for
from clearing_core.encoding.canonical import OlderForm
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import HEADER_BYTES


@dataclass(frozen=True)
class _Cut:
    """The oldest version of a type, the current one less its last ``count`` fields."""

    header: bytes  # the older version's
    proof: RowPlan  # its plan, under the current version's header: reads a body cut short
    count: int


class LaneForms:
    """Per current version (by header) with older versions: the cut to the oldest, or
    None where one of them is not a cut (the codec makes those forms)."""

    def __init__(self, codec: SingleObjectCodec, plans: Mapping[str, RowPlan]) -> None:
        self.codec = codec
        self._cuts: dict[bytes, _Cut | None] = {}
        for name, plan in plans.items():
            cuts = [_cut_of(plan, form) for form in codec.forms.older(codec.catalog.current(name))]
            if cuts:
                self._cuts[plan.header] = None if None in cuts else cuts[0]
        self.own = not self._cuts  # every row the lane accepts is its own form

    def of(self, values: Sequence[bytes]) -> list[bytes]:
        """The canonical form of each value (rows the lane accepted)."""
        out = list(values)
        heads = [value[:HEADER_BYTES] for value in values]
        kinds = set(heads)
        for head in kinds & self._cuts.keys():
            at = (
                range(len(values))
                if len(kinds) == 1
                else [i for i, h in enumerate(heads) if h == head]
            )
            picked = [values[i] for i in at]
            cut = self._cuts[head]
            forms = map(self.codec.canonical, picked) if cut is None else self._by_cut(cut, picked)
            for i, form in zip(at, forms, strict=True):
                out[i] = form
        return out

    def _by_cut(self, cut: _Cut, values: list[bytes]) -> list[bytes]:
        """A row whose last byte is not 0 sets its last field (a null is the byte 0), so
        it has no older form; one whose body less ``cut.count`` bytes reads as the oldest
        version left those fields null (``canonical.complete``): it has that version's
        form. Any other row (a 0 at its end, not so read) the codec decides."""
        out = list(values)
        _, buffer, starts, ends = pack(values)
        open_ = buffer[ends - 1] == 0
        proved = decode_rows(cut.proof, buffer, starts, ends - cut.count).ok & open_
        end = -cut.count
        for i in np.flatnonzero(proved).tolist():
            out[i] = cut.header + values[i][HEADER_BYTES:end]
        for i in np.flatnonzero(open_ & ~proved).tolist():
            out[i] = self.codec.canonical(values[i])
        return out


def _cut_of(plan: RowPlan, form: OlderForm) -> _Cut | None:
    """The cut of ``form`` where it lacks the last fields of ``plan``, optional strings
    (a null one is the single byte 0)."""
    count = len(form.dropped)
    tail = plan.fields[len(plan.fields) - count :]
    if not form.cut or tail != form.dropped:
        return None
    if any(plan.kinds[plan.index(field)] != OPTIONAL_STRING for field in tail):
        return None
    older = plan_for(form.version)
    return None if older is None else _Cut(form.version.header, replace(older, header=plan.header),
                                           count)  # fmt: skip
