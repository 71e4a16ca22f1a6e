"""Pure decoding helpers: hex quantities, the EIP-1559 next base fee, effective tip, swaps.

>>> next_base_fee(1_000_000_000, 15_000_000, 30_000_000)  # exactly at target
1000000000
>>> next_base_fee(1_000_000_000, 30_000_000, 30_000_000)  # full block: +12.5 %
1125000000
>>> next_base_fee(1_000_000_000, 0, 30_000_000)  # empty block: -12.5 %
875000000
>>> effective_tip(2, max_fee=30, max_priority_fee=2, gas_price=30, base_fee_next=29)
1
>>> effective_tip(0, max_fee=None, max_priority_fee=None, gas_price=30, base_fee_next=25)
5
"""

from __future__ import annotations

from connectors.venues.ethereum import schemas

BASE_FEE_MAX_CHANGE_DENOMINATOR = 8  # EIP-1559
ELASTICITY_MULTIPLIER = 2  # EIP-1559


def hex_int(value: str | None) -> int | None:
    """``"0x1a"`` -> 26; None stays None. Raises ValueError on garbage."""
    if value is None:
        return None
    return int(value, 16)


def next_base_fee(base_fee: int, gas_used: int, gas_limit: int) -> int:
    """The base fee of the block after one with ``base_fee``/``gas_used``/``gas_limit``.

    EIP-1559 (https://eips.ethereum.org/EIPS/eip-1559, "Specification"):
    ``target = gas_limit // ELASTICITY_MULTIPLIER``; above target the fee rises by
    ``max(base_fee * (gas_used - target) // target // 8, 1)``, below it falls by
    ``base_fee * (target - gas_used) // target // 8``; at target it is unchanged.
    Integer arithmetic exactly as the EIP's reference code.
    """
    target = gas_limit // ELASTICITY_MULTIPLIER
    if target <= 0 or gas_used == target:
        return base_fee
    if gas_used > target:
        delta = base_fee * (gas_used - target) // target // BASE_FEE_MAX_CHANGE_DENOMINATOR
        return base_fee + max(delta, 1)
    delta = base_fee * (target - gas_used) // target // BASE_FEE_MAX_CHANGE_DENOMINATOR
    return base_fee - delta


def effective_tip(
    tx_type: int | None,
    *,
    max_fee: int | None,
    max_priority_fee: int | None,
    gas_price: int | None,
    base_fee_next: int | None,
) -> int | None:
    """What the block producer would get per gas in the next block (may be negative:
    the tx is not includable yet). EIP-1559 types (2, 3, 4):
    ``min(maxPriorityFeePerGas, maxFeePerGas - base_fee_next)``; legacy/access-list
    (0, 1): ``gasPrice - base_fee_next``. None without a known base fee. The reported
    ``gasPrice`` of a pending type-2 tx is ignored (geth sets it to maxFeePerGas)."""
    if base_fee_next is None:
        return None
    if max_fee is not None and max_priority_fee is not None and tx_type not in (0, 1):
        return min(max_priority_fee, max_fee - base_fee_next)
    if gas_price is not None:
        return gas_price - base_fee_next
    return None


def _word(data: bytes, i: int) -> bytes | None:
    w = data[4 + 32 * i : 4 + 32 * (i + 1)]
    return w if len(w) == 32 else None


def _addr(word: bytes) -> str:
    return "0x" + word[12:].hex()


def decode_swap(selector: str | None, input_hex: str, value: int):
    """``(dex_swap, token_in, amount_in, notional_wei)`` for a known router selector.

    Honest by construction: ``notional_wei`` is set only when the input asset is ETH
    (V2 ``swap*ETH*`` taking msg.value, any router call carrying msg.value) or WETH
    (V3 ``exactInputSingle`` with tokenIn = mainnet WETH). Token amounts stay in
    token base units in ``amount_in`` with ``token_in``; we do not price tokens.
    V2 token-in calls decode the first word (amountIn, or amountOut for exact-out:
    then amount_in is None). Multi-hop V3 paths and Universal Router commands are not
    decoded beyond msg.value.
    """
    if selector is None or selector not in schemas.SWAP_SELECTORS:
        return False, None, None, None
    try:
        data = bytes.fromhex(input_hex[2:])
    except ValueError:
        return True, None, None, (value or None)
    if selector in schemas.V2_ETH_IN:
        return True, None, value, value
    if selector in schemas.V2_TOKEN_IN:
        name = schemas.V2_TOKEN_IN[selector]
        w0 = _word(data, 0)
        if name.startswith("swapExact") and w0 is not None:
            return True, None, int.from_bytes(w0, "big"), None
        return True, None, None, None
    if selector in (schemas.V3_EXACT_INPUT_SINGLE, schemas.V3_EXACT_INPUT_SINGLE_02):
        amount_slot = 5 if selector == schemas.V3_EXACT_INPUT_SINGLE else 4
        w0, wa = _word(data, 0), _word(data, amount_slot)
        if w0 is None or wa is None:
            return True, None, None, (value or None)
        token_in, amount_in = _addr(w0), int.from_bytes(wa, "big")
        notional = amount_in if token_in == schemas.WETH_MAINNET else (value or None)
        return True, token_in, amount_in, notional
    return True, None, (value or None), (value or None)
