"""Wire shapes of the Ethereum JSON-RPC frames we read, and the request builders.

Quantities are hex strings (``"0x5208"``); unknown fields are ignored, so geth,
Nethermind, Erigon, reth and anvil objects all decode (protocols.md §4.1).
"""

from __future__ import annotations

import msgspec


class RpcTx(msgspec.Struct, kw_only=True):
    """A transaction object as ``newPendingTransactions`` (full) / ``eth_getTransactionByHash`` send it."""

    hash: str
    sender: str | None = msgspec.field(default=None, name="from")  # Erigon once omitted it
    to: str | None = None  # None: contract creation
    value: str = "0x0"
    type: str | None = None
    gas: str | None = None
    gasPrice: str | None = None  # geth: = maxFeePerGas for a pending type-2 tx (the trap)
    maxFeePerGas: str | None = None
    maxPriorityFeePerGas: str | None = None
    input: str = "0x"
    nonce: str | None = None


class RpcHeader(msgspec.Struct, kw_only=True):
    """A ``newHeads`` header."""

    number: str
    hash: str
    parentHash: str | None = None
    timestamp: str | None = None
    baseFeePerGas: str | None = None  # absent before London
    gasUsed: str | None = None
    gasLimit: str | None = None


# Uniswap router selectors (keccak256 of the signature, first 4 bytes).
V2_ETH_IN = {  # the ETH sent (msg.value) is the input amount
    "0x7ff36ab5": "swapExactETHForTokens",
    "0xb6f9de95": "swapExactETHForTokensSupportingFeeOnTransferTokens",
    "0xfb3bdb41": "swapETHForExactTokens",  # msg.value is the maximum in
}
V2_TOKEN_IN = {  # first word amountIn (exact in) or amountOut (exact out); path is dynamic
    "0x38ed1739": "swapExactTokensForTokens",
    "0x18cbafe5": "swapExactTokensForETH",
    "0x5c11d795": "swapExactTokensForTokensSupportingFeeOnTransferTokens",
    "0x791ac947": "swapExactTokensForETHSupportingFeeOnTransferTokens",
    "0x8803dbee": "swapTokensForExactTokens",
    "0x4a25d94a": "swapTokensForExactETH",
}
V3_EXACT_INPUT_SINGLE = "0x414bf389"  # SwapRouter: (tokenIn,tokenOut,fee,recipient,deadline,amountIn,...)
V3_EXACT_INPUT_SINGLE_02 = "0x04e45aaf"  # SwapRouter02: (tokenIn,tokenOut,fee,recipient,amountIn,...)
V3_OTHER = {
    "0xc04b8d59": "exactInput",
    "0xb858183f": "exactInput(SwapRouter02)",
    "0xdb3e2198": "exactOutputSingle",
    "0x5023b4df": "exactOutputSingle(SwapRouter02)",
    "0xf28c0498": "exactOutput",
    "0x09b81346": "exactOutput(SwapRouter02)",
}
UNIVERSAL_ROUTER = {
    "0x3593564c": "execute(bytes,bytes[],uint256)",
    "0x24856bc3": "execute(bytes,bytes[])",
}
SWAP_SELECTORS = (
    set(V2_ETH_IN) | set(V2_TOKEN_IN) | {V3_EXACT_INPUT_SINGLE, V3_EXACT_INPUT_SINGLE_02}
    | set(V3_OTHER) | set(UNIVERSAL_ROUTER)
)
WETH_MAINNET = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"


def rpc_request(req_id: int, method: str, params: list) -> dict:
    """One JSON-RPC 2.0 request object, keys in a fixed order (byte-exact frames)."""
    return {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
