"""The fast lane's payment rules, by parts (``validate`` checks the other types
by profile).

Why not a cached profile per (reporter, payer, payee, kind, currency), as for
meter readings and usage events: those combinations are mostly new (60k in
100k generated payments), so a cache hardly hits and each profile, made in
Python, cost about 5 µs, the largest share of a payment's time in the lane.
The parts are few: the participants a batch names (a few hundred), the payment
kinds, the currencies. So each distinct id of the batch is cut from the buffer
once, the rules of the per-event path (``clearing_core.ingest.validate``: the kind is offered, the
currency known, payer and payee differ, the reporter is the payer, or the payee
of an electricity bill, all three are active, both hold an account in the
currency) run over arrays, and Python builds one aggregate key per distinct
(payer, payee, kind, currency) that passes.

Like the rest of the lane this only ever accepts: a row that fails any rule
keeps profile -1 and the per-event path decides it, reason and message.
"""

from __future__ import annotations

import numpy as np

from clearing_core.encoding.avro_rows import RowPlan, Rows
from clearing_core.ingest.batch import AggregateKey
from clearing_core.ingest.fast_lane.decode import Columns
from clearing_core.ingest.fast_lane.spans import span_groups
from clearing_core.jit import I64
from clearing_core.refdata import ReferenceData
from clearing_core.refdata.models import PaymentKind

PARTY_FIELDS = ("reporter_id", "payer_id", "payee_id")


def payment_profiles(
    columns: Columns, refdata: ReferenceData
) -> tuple[I64, I64, list[AggregateKey]]:
    """Per row the index of its profile (-1: the per-event path decides), the profiles'
    parameters as an int64 matrix (one column: the largest amount of the kind), and
    the profiles' aggregate keys."""
    plan, rows, ok = columns.plan, columns.rows, columns.ok
    buffer, text = columns.buffer, columns.text
    good = np.flatnonzero(ok)
    profile = np.full(len(ok), -1, np.int64)
    if not len(good):
        return profile, np.zeros((1, 1), np.int64), []
    parties, names, parties_same = _interned(plan, rows, good, PARTY_FIELDS, buffer, text)
    (currency,), currencies, currency_same = _interned(plan, rows, good, ("currency",),
                                                       buffer, text)  # fmt: skip
    reporter, payer, payee = parties
    kinds = plan.enum_symbols["kind"]
    kind = rows.number[good, plan.index("kind")]
    specs = [refdata.payment_kind(k) for k in kinds]
    offered = np.array([s is not None for s in specs], np.bool_)
    bill = np.array([k == PaymentKind.ELECTRICITY_BILL for k in kinds], np.bool_)
    found = [refdata.participants.get(n) for n in names]
    active = np.array([p is not None and p.active for p in found], np.bool_)
    known = [c in refdata.currencies for c in currencies]
    account = np.array([[k and refdata.account(n, c) is not None
                         for c, k in zip(currencies, known, strict=True)] for n in names],
                       np.bool_).reshape(len(names), len(currencies))  # fmt: skip
    passed = (parties_same & currency_same & offered[kind] & (payer != payee)
              & ((reporter == payer) | (bill[kind] & (reporter == payee)))
              & active[reporter] & active[payer] & active[payee]
              & account[payer, currency] & account[payee, currency])  # fmt: skip
    code = ((payer * len(names) + payee) * len(kinds) + kind) * len(currencies) + currency
    _, first_at, inverse = np.unique(code[passed], return_index=True, return_inverse=True)
    profile[good[passed]] = inverse
    at = np.flatnonzero(passed)[first_at]
    assert offered[kind[at]].all()  # so the placeholders of kinds not offered are never read
    priority = [0 if s is None else s.priority for s in specs]
    keys: list[AggregateKey] = [
        (currencies[c], names[a], names[b], "PAYMENT", priority[k], None, None)
        for a, b, k, c in zip(payer[at].tolist(), payee[at].tolist(), kind[at].tolist(),
                              currency[at].tolist(), strict=True)
    ]  # fmt: skip
    largest = np.array([0 if s is None else s.max_amount_minor for s in specs], np.int64)
    params = largest[kind[at]].reshape(-1, 1) if len(at) else np.zeros((1, 1), np.int64)
    return profile, params, keys


def _interned(
    plan: RowPlan, rows: Rows, good: I64, fields: tuple[str, ...], buffer: np.ndarray,
    text: str,
) -> tuple[list[I64], list[str], np.ndarray]:  # fmt: skip
    """The strings of ``fields`` in the rows ``good`` as indices into their distinct
    texts, shared by the fields (an id in two fields gets one index, so equal ids
    compare as equal indices), and per row whether every one of its strings was
    checked byte for byte against its text's first occurrence (a hash collision
    never merges two ids)."""
    begins = [rows.str_offset[good, plan.index(f)] for f in fields]
    ends = [b + rows.str_length[good, plan.index(f)] for b, f in zip(begins, fields, strict=True)]
    begin, end = np.concatenate(begins), np.concatenate(ends)
    _, firsts, inverse, same = span_groups(buffer, begin, end, np.ones(len(begin), np.bool_))
    texts = list(map(text.__getitem__, map(slice, begin[firsts].tolist(), end[firsts].tolist())))
    width = len(good)
    split = [inverse[i * width : (i + 1) * width] for i in range(len(fields))]
    return split, texts, np.asarray(same.reshape(len(fields), width).all(axis=0), np.bool_)
