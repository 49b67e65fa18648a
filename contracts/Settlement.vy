# pragma version ~=0.4.3
# pragma evm-version shanghai
"""
@title Clearing-house settlement: one batch per call, never twice
@notice The operator (the clearing house's settlement agent) submits a batch of
        instructions; each pulls the amount from its payer with transferFrom
        against the allowance the payer gave this contract (prefunding) and pays
        the payee. The batch key is recorded before anything moves, and a key
        already recorded is refused, so a batch can never pay twice whatever
        crashes around it. A payer without the balance or the allowance fails
        its own instruction only: every outcome is an event, read from the
        receipt as a settlement acknowledgement.
"""

interface Token:
    def transferFrom(owner: address, receiver: address, amount: uint256) -> bool: nonpayable
    def balanceOf(owner: address) -> uint256: view
    def allowance(owner: address, spender: address) -> uint256: view

MAX_INSTRUCTIONS: constant(uint256) = 256
REASON_INSUFFICIENT_BALANCE: constant(uint8) = 1
REASON_INSUFFICIENT_ALLOWANCE: constant(uint8) = 2

event InstructionPaid:
    batch_key: indexed(bytes32)
    index: uint256
    payer: indexed(address)
    payee: indexed(address)
    amount: uint256

event InstructionFailed:
    batch_key: indexed(bytes32)
    index: uint256
    payer: indexed(address)
    payee: indexed(address)
    amount: uint256
    reason: uint8

event BatchSettled:
    batch_key: indexed(bytes32)
    paid: uint256
    failed: uint256

token: public(immutable(address))
operator: public(immutable(address))
# The block in which each batch key was settled; 0 for a key never seen.
settled_block: public(HashMap[bytes32, uint256])


@deploy
def __init__(token_: address, operator_: address):
    token = token_
    operator = operator_


@external
def settle(
    batch_key: bytes32,
    payers: DynArray[address, MAX_INSTRUCTIONS],
    payees: DynArray[address, MAX_INSTRUCTIONS],
    amounts: DynArray[uint256, MAX_INSTRUCTIONS],
):
    assert msg.sender == operator, "only the operator settles"
    assert self.settled_block[batch_key] == 0, "batch already settled"
    assert len(payers) == len(payees) and len(payers) == len(amounts), "ragged batch"
    self.settled_block[batch_key] = block.number
    paid: uint256 = 0
    failed: uint256 = 0
    for i: uint256 in range(len(payers), bound=MAX_INSTRUCTIONS):
        payer: address = payers[i]
        payee: address = payees[i]
        amount: uint256 = amounts[i]
        reason: uint8 = 0
        if staticcall Token(token).balanceOf(payer) < amount:
            reason = REASON_INSUFFICIENT_BALANCE
        elif staticcall Token(token).allowance(payer, self) < amount:
            reason = REASON_INSUFFICIENT_ALLOWANCE
        if reason == 0:
            assert extcall Token(token).transferFrom(payer, payee, amount)
            paid += 1
            log InstructionPaid(batch_key=batch_key, index=i, payer=payer, payee=payee, amount=amount)
        else:
            failed += 1
            log InstructionFailed(
                batch_key=batch_key, index=i, payer=payer, payee=payee, amount=amount, reason=reason
            )
    log BatchSettled(batch_key=batch_key, paid=paid, failed=failed)
