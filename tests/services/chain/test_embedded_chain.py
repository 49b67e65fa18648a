"""The embedded chain node and the token-rail contracts on it (DESIGN §11).

A real node process (py-evm behind JSON-RPC) on a free port: the contracts are
compiled from contracts/, deployed, prefunded, and a batch is settled through
the same calls the settlement agent makes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3.contract import Contract

from clearing_core.exports.token_calls import TokenCall, call_key
from clearing_core.refdata.demo_chain import demo_address
from clearing_core.refdata.models import Rail
from clearing_services.chain.client import ChainClient, ChainError, SenderLocks
from clearing_services.chain.contracts import SETTLEMENT, TOKEN, compiled
from clearing_services.chain.deploy import (
    Funding,
    RailContracts,
    deploy_rail,
    prefund,
    rail_contracts,
)
from clearing_services.chain.local import LocalChain
from clearing_services.chain.node import dev_key
from clearing_services.chain.settlement import executed, settle
from tests.support.chains import CACHE, operator, start_chain

RAIL = Rail(rail_id="cnh-stable", name="CNH stablecoin", currency="CNH", decimals=6,
            model="DIRECT", export_format="TOKEN_BATCH", cycle_seconds=30, token_symbol="CNHT",
            chain="embedded", clearing_house_address=demo_address("CH"))  # type: ignore[arg-type]  # fmt: skip
FUNDED = 10**12
A, B, POOR, NO_APPROVAL = (demo_address(x) for x in ("A", "B", "POOR", "NO-APPROVAL"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalChain]:
    chain = start_chain(tmp_path_factory.mktemp("chain") / "chain")
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture(scope="module")
def deployed(node: LocalChain) -> RailContracts:
    client = operator(node)
    contracts = deploy_rail(client, RAIL, CACHE, node.home)
    prefund(client, contracts, CACHE, [Funding("A", FUNDED), Funding("B", FUNDED),
                                       Funding("POOR", 5)])  # fmt: skip
    return contracts


def _contracts(node: LocalChain, deployed: RailContracts) -> tuple[ChainClient, Contract, Contract]:
    client = operator(node)
    return (client, client.contract(deployed.settlement, compiled(SETTLEMENT, CACHE)),
            client.contract(deployed.token, compiled(TOKEN, CACHE)))  # fmt: skip


def _call(batch_id: str, *rows: tuple[str, str, int]) -> TokenCall:
    return TokenCall(batch_id, 0, call_key(batch_id, 0), tuple(f"{batch_id}-{i}" for i in
                     range(len(rows))), tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                     tuple(r[2] for r in rows))  # fmt: skip


def test_a_batch_pays_the_funded_and_fails_the_rest_each_with_its_reason(
    node: LocalChain, deployed: RailContracts
) -> None:
    client, settlement, token = _contracts(node, deployed)
    before = {x: token.functions.balanceOf(x).call() for x in (A, B, POOR)}
    done = settle(client, settlement, _call("b-mixed", (A, B, 100), (POOR, A, 50), (B, POOR, 7)))
    assert done.sent_now
    assert [(o.index, o.paid, o.reason) for o in sorted(done.outcomes, key=lambda o: o.index)] == [
        (0, True, 0), (1, False, 1), (2, True, 0)]  # fmt: skip
    after = {x: token.functions.balanceOf(x).call() for x in (A, B, POOR)}
    assert {x: after[x] - before[x] for x in after} == {A: -100, B: 93, POOR: 7}


def test_a_payer_without_an_allowance_fails_with_its_own_reason(
    node: LocalChain, deployed: RailContracts
) -> None:
    client, settlement, token = _contracts(node, deployed)
    client.transact(token.functions.mint(NO_APPROVAL, FUNDED), gas=120_000)  # funds, no approval
    done = settle(client, settlement, _call("b-allow", (NO_APPROVAL, A, 10), (A, B, 1)))
    assert sorted((o.index, o.paid, o.reason) for o in done.outcomes) == [
        (0, False, 2),
        (1, True, 0),
    ]


def test_a_settled_batch_is_never_paid_again(node: LocalChain, deployed: RailContracts) -> None:
    client, settlement, token = _contracts(node, deployed)
    call = _call("b-once", (A, B, 1_000))
    first = settle(client, settlement, call)
    balance = token.functions.balanceOf(B).call()
    again = settle(client, settlement, call)  # what the agent does after a crash: reconciled
    assert (again.sent_now, again.inclusion, again.outcomes) == (False, first.inclusion,
                                                                 first.outcomes)  # fmt: skip
    by_hand = settlement.functions.settle(call.key, [A], [B], [1_000])
    with pytest.raises(ChainError, match="execution reverted: batch already settled"):
        client.transact(by_hand)  # the node's estimate runs it: refused
    assert client.transact(by_hand, gas=300_000).receipt["status"] == 0  # sent anyway: reverted
    assert token.functions.balanceOf(B).call() == balance


def test_only_the_operator_settles(node: LocalChain, deployed: RailContracts) -> None:
    client, settlement, _ = _contracts(node, deployed)
    other = ChainClient(node.url, dev_key(1).to_bytes())  # funded, not the operator
    call = _call("b-other", (A, B, 1))
    with pytest.raises(ChainError, match="only the operator settles"):
        other.transact(settlement.functions.settle(call.key, [A], [B], [1]))
    assert executed(client, settlement, call) is None


def test_a_call_out_of_gas_records_nothing_and_settles_once_later(
    node: LocalChain, deployed: RailContracts
) -> None:
    client, settlement, token = _contracts(node, deployed)
    call = _call("b-gas", (A, B, 3))
    function = settlement.functions.settle(call.key, [A], [B], [3])
    assert client.transact(function, gas=40_000).receipt["status"] == 0
    assert executed(client, settlement, call) is None
    before = token.functions.balanceOf(B).call()
    assert settle(client, settlement, call).sent_now
    assert token.functions.balanceOf(B).call() == before + 3


def test_wrong_addresses_urls_and_chains_are_one_line_errors(
    node: LocalChain, deployed: RailContracts
) -> None:
    client = operator(node)
    with pytest.raises(ChainError, match="no contract at"):
        client.contract(A, compiled(SETTLEMENT, CACHE))
    with pytest.raises(ChainError, match=re.escape("is not contracts/Settlement.vy")):
        client.contract(deployed.token, compiled(SETTLEMENT, CACHE))
    with pytest.raises(ChainError, match="the rail expects chain 1"):
        ChainClient(node.url, bytes(31) + b"\x01", expected_chain_id=1)
    with pytest.raises(
        ChainError, match=re.escape("no JSON-RPC node answers at http://127.0.0.1:9")
    ):
        ChainClient("http://127.0.0.1:9", bytes(31) + b"\x01")


def test_the_chain_and_its_deployments_survive_a_restart(
    node: LocalChain, deployed: RailContracts
) -> None:
    client, _, token = _contracts(node, deployed)
    balances = [token.functions.balanceOf(x).call() for x in (A, B, POOR)]
    height = client.w3.eth.block_number
    node.stop()
    assert node.start()[1]
    client, _, token = _contracts(node, deployed)
    assert client.w3.eth.block_number == height
    assert [token.functions.balanceOf(x).call() for x in (A, B, POOR)] == balances
    assert rail_contracts(client, RAIL, node.home) == deployed


def test_a_fresh_chain_does_not_use_another_chains_deployments(
    node: LocalChain, deployed: RailContracts, tmp_path: Path
) -> None:
    fresh = start_chain(tmp_path / "other")
    try:
        (tmp_path / "other" / "deployments.json").write_bytes(
            (node.home / "deployments.json").read_bytes()
        )
        with pytest.raises(
            ChainError, match=re.escape("run `clearing settle --rail cnh-stable --deploy`")
        ):
            rail_contracts(operator(fresh), RAIL, fresh.home)
    finally:
        fresh.stop()


def test_a_hub_batch_moves_through_the_house_and_leaves_it_where_the_model_says(
    node: LocalChain, deployed: RailContracts
) -> None:
    """HUB: every net debtor pays the clearing house, which pays every net creditor; the
    house's own address holds a float and approves the contract like a participant."""
    client, settlement, token = _contracts(node, deployed)
    house = demo_address("CLEARING_HOUSE/hub-rail")
    prefund(client, deployed, CACHE, [Funding("CLEARING_HOUSE/hub-rail", 1_000)])
    before = {x: token.functions.balanceOf(x).call() for x in (A, B, house)}
    call = _call("b-hub", (A, house, 700), (house, B, 500), (house, A, 150))
    done = settle(client, settlement, call)
    assert all(o.paid for o in done.outcomes)
    after = {x: token.functions.balanceOf(x).call() for x in (A, B, house)}
    assert {x: after[x] - before[x] for x in after} == {A: -550, B: 500, house: 50}


def test_two_senders_of_one_key_take_their_nonces_in_turn(node: LocalChain) -> None:
    """Two rails' agents sign with the operator's key at once: in one process they
    share the sender's lock; across processes (two clients here) a nonce taken first
    by the other is taken again. Every transfer is mined, none is refused."""
    shared = SenderLocks()
    clients = [ChainClient(node.url, dev_key(2).to_bytes(), senders=shared),
               ChainClient(node.url, dev_key(2).to_bytes(), senders=shared),
               ChainClient(node.url, dev_key(2).to_bytes())]  # fmt: skip
    start = clients[0].w3.eth.get_transaction_count(clients[0].address)
    errors: list[BaseException] = []

    def send_many(client: ChainClient) -> None:
        try:
            for _ in range(8):
                assert client.send_value(B, 1).receipt["status"] == 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send_many, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert clients[0].w3.eth.get_transaction_count(clients[0].address) == start + 24
