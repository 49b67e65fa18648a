"""Cross-record checks of a reference-data document.

Why separate from the models: each model checks itself; these checks need
the whole document (does the rail exist, is the meter on another contract,
does the buyer hold an account in the contract currency). Every problem is
one line that names the section, the record id and the field, so an operator
can fix the YAML without reading code.
"""

from __future__ import annotations

import itertools
from collections.abc import Set
from datetime import UTC, datetime, timedelta

from clearing_core.errors import InputError
from clearing_core.refdata.document import SECTIONS, RefdataDocument
from clearing_core.refdata.models import (
    CHAIN_EMBEDDED,
    ExportFormat,
    Participant,
    PpaContract,
    PriceBook,
    Rail,
)

PROBLEMS_MAX = 100


class RefdataError(InputError):
    """Reference data that cannot be loaded; ``problems`` lists every line found."""

    reason_code = "BAD_REFDATA"

    def __init__(self, problems: list[str]) -> None:
        assert problems
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(f"refdata: {problems[0]}{more}")
        self.problems = problems


class _Found:
    """Collects problem lines up to a bound (a broken file can have millions)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        if len(self.lines) < PROBLEMS_MAX:
            self.lines.append(line)


def iso_ms(ms: int) -> str:
    """A millisecond timestamp as ISO 8601 UTC text, for messages and YAML."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def find_problems(doc: RefdataDocument) -> list[str]:
    """Every cross-record problem of ``doc``, in document order (empty when sound)."""
    found = _Found()
    _unique_ids(doc, found)
    currencies = {c.code: c for c in doc.currencies}
    rails = {r.rail_id: r for r in doc.rails}
    for currency in doc.currencies:
        if not any(r.currency == currency.code for r in doc.rails):
            found.add(f"currencies[{currency.code}]: no rail settles {currency.code}")
    _planned_partitions(doc, found)
    for rail in doc.rails:
        where = f"rails[{rail.rail_id}]"
        cur = currencies.get(rail.currency)
        if cur is None:
            found.add(f"{where}.currency: unknown currency {rail.currency!r}")
        elif rail.decimals < cur.minor_exponent:
            found.add(
                f"{where}.decimals: {rail.decimals} is below the minor exponent "
                f"{cur.minor_exponent} of {cur.code} (conversion would lose value)"
            )
        if rail.export_format is ExportFormat.TOKEN_BATCH:
            _check_token_rail(rail, where, found)
    house_accounts = {r.clearing_house_account: r.rail_id for r in doc.rails}
    participants = {p.participant_id: p for p in doc.participants}
    for participant in doc.participants:
        _check_participant(participant, currencies.keys(), rails, house_accounts, found)
    _unique_chain_addresses(doc, found)
    meters: dict[str, str] = {}
    for contract in doc.contracts:
        _check_contract(contract, currencies.keys(), participants, meters, found)
    for book in doc.price_books:
        _check_price_book(book, currencies.keys(), participants, found)
    return found.lines


def _check_token_rail(rail: Rail, where: str, found: _Found) -> None:
    """A token rail names its token, its chain and the clearing house's address; on a
    chain given by URL, also the contracts (only the embedded chain deploys its own)."""
    if rail.token_symbol is None:
        found.add(f"{where}.token_symbol: required on a TOKEN_BATCH rail")
    if rail.chain is None:
        found.add(f"{where}.chain: required on a TOKEN_BATCH rail ('embedded' or a JSON-RPC URL)")
    if rail.clearing_house_address is None:
        found.add(f"{where}.clearing_house_address: required on a TOKEN_BATCH rail")
    if rail.chain not in (None, CHAIN_EMBEDDED):
        for name in ("token_address", "settlement_address"):
            if getattr(rail, name) is None:
                found.add(f"{where}.{name}: required on a chain given by URL")


def _unique_chain_addresses(doc: RefdataDocument, found: _Found) -> None:
    """One owner per address: a balance on chain must belong to exactly one account."""
    owners: dict[str, str] = {}
    named = [(f"rails[{r.rail_id}].clearing_house_address", r.clearing_house_account,
              r.clearing_house_address) for r in doc.rails]  # fmt: skip
    named += [(f"participants[{p.participant_id}].chain_address", p.participant_id,
               p.chain_address) for p in doc.participants]  # fmt: skip
    for where, owner, address in named:
        if address is None:
            continue
        other = owners.setdefault(address.lower(), owner)
        if other != owner:
            found.add(f"{where}: {address} is already the address of {other!r}")


def _planned_partitions(doc: RefdataDocument, found: _Found) -> None:
    """Each currency on a partition of clearing.obligations of its own, by plan: its
    markers and obligations must stay in order in one partition, and a currency that
    shared one with another would wait for that one's traffic."""
    owners: dict[int, str] = {}
    for currency in doc.currencies:
        where, partition = f"currencies[{currency.code}]", currency.obligation_partition
        if partition is None:
            found.add(f"{where}.obligation_partition: missing (each currency names its "
                      "own partition of clearing.obligations: docs/refdata.md)")  # fmt: skip
            continue
        other = owners.setdefault(partition, currency.code)
        if other != currency.code:
            found.add(f"{where}.obligation_partition: {partition} is already {other}'s")


def _unique_ids(doc: RefdataDocument, found: _Found) -> None:
    for section, (_model, id_field) in SECTIONS.items():
        seen: set[str] = set()
        for record in getattr(doc, section):
            key = str(getattr(record, id_field))
            if key in seen:
                found.add(f"{section}[{key}]: duplicate {id_field}")
            seen.add(key)


def _check_participant(
    p: Participant,
    currencies: Set[str],
    rails: dict[str, Rail],
    house_accounts: dict[str, str],
    found: _Found,
) -> None:
    where = f"participants[{p.participant_id}]"
    if p.participant_id in house_accounts:
        found.add(
            f"{where}: id is the clearing house account of rail "
            f"{house_accounts[p.participant_id]!r}"
        )
    seen: set[str] = set()
    for account in p.accounts:
        at = f"{where}.accounts[{account.currency}]"
        if account.currency in seen:
            found.add(f"{at}: second account in {account.currency} (one per currency)")
        seen.add(account.currency)
        rail = rails.get(account.rail_id)
        if account.currency not in currencies:
            found.add(f"{at}: unknown currency {account.currency!r}")
        elif rail is None:
            found.add(f"{at}: unknown rail {account.rail_id!r}")
        elif rail.currency != account.currency:
            found.add(
                f"{at}: rail {account.rail_id!r} settles {rail.currency}, not {account.currency}"
            )
        elif rail.export_format is ExportFormat.TOKEN_BATCH and p.chain_address is None:
            found.add(
                f"{where}.chain_address: required for token rail {account.rail_id!r} "
                "(it pays and receives on chain)"
            )
        elif rail.export_format is ExportFormat.ISO20022 and p.bic is None:
            found.add(
                f"{where}.bic: required for ISO 20022 rail {account.rail_id!r} "
                "(pacs.009 names every agent by BIC)"
            )


def _has_account(p: Participant, currency: str) -> bool:
    return any(a.currency == currency for a in p.accounts)


def _check_party(
    where: str, party_id: str, currency: str, participants: dict[str, Participant], found: _Found
) -> None:
    party = participants.get(party_id)
    if party is None:
        found.add(f"{where}: unknown participant {party_id!r}")
    elif not _has_account(party, currency):
        found.add(f"{where}: participant {party_id!r} has no {currency} account")


def _check_contract(
    c: PpaContract,
    currencies: Set[str],
    participants: dict[str, Participant],
    meters: dict[str, str],
    found: _Found,
) -> None:
    where = f"contracts[{c.contract_id}]"
    if c.currency not in currencies:
        found.add(f"{where}.currency: unknown currency {c.currency!r}")
    _check_party(f"{where}.seller_id", c.seller_id, c.currency, participants, found)
    _check_party(f"{where}.buyer_id", c.buyer_id, c.currency, participants, found)
    if c.seller_id == c.buyer_id:
        found.add(f"{where}.buyer_id: same participant as seller_id ({c.seller_id!r})")
    for meter in c.meter_ids:
        other = meters.setdefault(meter, c.contract_id)
        if other != c.contract_id:
            found.add(f"{where}.meter_ids: meter {meter!r} is already on contract {other!r}")
    if len(set(c.meter_ids)) != len(c.meter_ids):
        twice = next(m for i, m in enumerate(c.meter_ids) if m in c.meter_ids[:i])
        found.add(f"{where}.meter_ids: meter {twice!r} is listed twice")
    order = sorted(range(len(c.tou_bands)), key=lambda i: c.tou_bands[i].start_minute)
    for previous, current in itertools.pairwise(order):
        before, band = c.tou_bands[previous], c.tou_bands[current]
        if band.start_minute < before.end_minute:
            found.add(
                f"{where}.tou_bands[{current}]: minutes {band.start_minute}..{band.end_minute} "
                f"overlap tou_bands[{previous}] ({before.start_minute}..{before.end_minute})"
            )
    if c.valid_from is not None and c.valid_to is not None and c.valid_to <= c.valid_from:
        found.add(
            f"{where}.valid_to: {iso_ms(c.valid_to)} is not after valid_from {iso_ms(c.valid_from)}"
        )


def _check_price_book(
    b: PriceBook, currencies: Set[str], participants: dict[str, Participant], found: _Found
) -> None:
    where = f"price_books[{b.price_book_id}]"
    if b.currency not in currencies:
        found.add(f"{where}.currency: unknown currency {b.currency!r}")
    _check_party(f"{where}.provider_id", b.provider_id, b.currency, participants, found)
    skus: set[str] = set()
    for entry in b.entries:
        if entry.sku in skus:
            found.add(f"{where}.entries[{entry.sku}]: duplicate sku")
        skus.add(entry.sku)
    customers: set[str] = set()
    for customer in b.customer_ids:
        if customer in customers:
            found.add(f"{where}.customer_ids: {customer!r} is listed twice")
        customers.add(customer)
        if customer == b.provider_id:
            found.add(f"{where}.customer_ids: {customer!r} is the provider")
        _check_party(f"{where}.customer_ids", customer, b.currency, participants, found)
