"""How ``anvil-mempool.vcr.gz`` was made: ``volcast record --venue ethereum`` on a local anvil.

Run from the repository root with anvil on PATH (``make test-deps`` installs it)::

    .venv/bin/python tests/data/ethereum/record_anvil.py OUT_DIR

It starts anvil 1.7.1 on a free loopback port with ``--no-mining`` (sent transactions
stay pending until a block is mined), starts ``volcast record --venue ethereum`` against
it, and sends from anvil's ten dev accounts, over eight rounds with a block mined after
each: EIP-1559 transfers (priority fees 1-5 gwei, some with a fee cap that binds),
legacy (type 0) and access-list (type 1) transfers, the deployment of two stub
contracts from raw bytecode (a sink whose code is STOP; a burner that loops until out
of gas, to fill half a block and move the base fee up), and calls to the sink whose
calldata is shaped like Uniswap router swaps (V2 ``swapExactETHForTokens`` with
msg.value, V3 ``exactInputSingle`` with WETH in, V2 ``swapExactTokensForTokens``).
Everything the node sent is real anvil output; the chain is anvil's dev chain, not
mainnet, and the traffic is this script's.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
GWEI = 10**9
# anvil's default mnemonic, accounts 0..9
DEV = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65", "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9", "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
    "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f", "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
]
SINK_INITCODE = "0x6001600c60003960016000f300"  # deploys the 1-byte runtime 00 (STOP)
BURNER_INITCODE = "0x6004600c60003960046000f35b600056"  # deploys 5b600056: JUMPDEST PUSH1 0 JUMP
WETH = "c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
TOKEN = "6b175474e89094c44da98b954eedeac495271d0f"


def word(value: int | str) -> str:
    return (f"{value:064x}" if isinstance(value, int) else value.rjust(64, "0"))


def v2_swap_exact_eth_for_tokens(to: str) -> str:
    """swapExactETHForTokens(amountOutMin, path=[WETH, TOKEN], to, deadline)."""
    return "0x7ff36ab5" + word(1) + word(0x80) + word(to[2:].lower()) + word(2_000_000_000) + word(2) + word(WETH) + word(TOKEN)


def v3_exact_input_single(recipient: str, amount_in: int) -> str:
    """exactInputSingle((tokenIn=WETH, tokenOut, fee, recipient, deadline, amountIn, amountOutMinimum, sqrtPriceLimitX96))."""
    return ("0x414bf389" + word(WETH) + word(TOKEN) + word(3000) + word(recipient[2:].lower())
            + word(2_000_000_000) + word(amount_in) + word(1) + word(0))


def v2_swap_exact_tokens_for_tokens(to: str, amount_in: int) -> str:
    """swapExactTokensForTokens(amountIn, amountOutMin, path=[TOKEN, WETH], to, deadline)."""
    return ("0x38ed1739" + word(amount_in) + word(1) + word(0xA0) + word(to[2:].lower()) + word(2_000_000_000)
            + word(2) + word(TOKEN) + word(WETH))


class Node:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.nonce = [0] * len(DEV)

    def rpc(self, method: str, params: list):
        body = httpx.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).json()
        if "error" in body:
            raise RuntimeError(f"{method}: {body['error']}")
        return body["result"]

    def send(self, account: int, **tx) -> str:
        tx = {"from": DEV[account], "nonce": hex(self.nonce[account]), **tx}
        self.nonce[account] += 1
        return self.rpc("eth_sendTransaction", [tx])


def traffic(node: Node) -> None:
    node.rpc("evm_mine", [])  # a first head: every later arrival has a known next base fee
    time.sleep(0.3)
    sink_tx = node.send(0, data=SINK_INITCODE, gas=hex(100_000), maxFeePerGas=hex(3 * GWEI),
                        maxPriorityFeePerGas=hex(1 * GWEI))
    burner_tx = node.send(1, data=BURNER_INITCODE, gas=hex(100_000), gasPrice=hex(2 * GWEI))
    node.rpc("evm_mine", [])
    sink = node.rpc("eth_getTransactionReceipt", [sink_tx])["contractAddress"]
    burner = node.rpc("eth_getTransactionReceipt", [burner_tx])["contractAddress"]
    time.sleep(0.5)
    for rnd in range(8):
        for k in range(3 + (rnd * 5) % 8):
            acct = (rnd + k) % 10
            which = (rnd * 7 + k) % 9
            if which in (0, 1, 2):  # EIP-1559 transfer; which == 2: fee cap = priority fee, so the cap binds
                tip = (1 + (k + rnd) % 5) * GWEI
                node.send(acct, to=DEV[(acct + 1) % 10], value=hex((k + 1) * 10**16), gas=hex(21_000),
                          maxFeePerGas=hex(tip if which == 2 else (20 + k) * GWEI), maxPriorityFeePerGas=hex(tip))
            elif which == 3:  # legacy
                node.send(acct, to=DEV[(acct + 2) % 10], value=hex(10**15), gas=hex(21_000),
                          gasPrice=hex((2 + k % 5) * GWEI))
            elif which == 4:  # access list (type 1)
                node.send(acct, to=DEV[(acct + 3) % 10], value=hex(10**15), gas=hex(30_000),
                          gasPrice=hex(3 * GWEI), accessList=[])
            elif which == 5:  # V2 swap paying ETH
                node.send(acct, to=sink, value=hex((rnd + 1) * 10**17), gas=hex(100_000),
                          data=v2_swap_exact_eth_for_tokens(DEV[acct]), maxFeePerGas=hex(30 * GWEI),
                          maxPriorityFeePerGas=hex(2 * GWEI))
            elif which == 6:  # V3 exact-in single with WETH in
                node.send(acct, to=sink, gas=hex(120_000), data=v3_exact_input_single(DEV[acct], (k + 1) * 10**17),
                          maxFeePerGas=hex(30 * GWEI), maxPriorityFeePerGas=hex(3 * GWEI))
            elif which == 7:  # V2 token-in swap: no ETH notional
                node.send(acct, to=sink, gas=hex(120_000), data=v2_swap_exact_tokens_for_tokens(DEV[acct], 5 * 10**18),
                          maxFeePerGas=hex(30 * GWEI), maxPriorityFeePerGas=hex(1 * GWEI))
            else:  # burn 16M gas: more than half the 30M block gas limit, so the base fee rises
                node.send(acct, to=burner, gas=hex(16_000_000), maxFeePerGas=hex(30 * GWEI),
                          maxPriorityFeePerGas=hex(1 * GWEI))
            time.sleep(0.15)
        time.sleep(0.4)
        node.rpc("evm_mine", [])
        time.sleep(0.4)


def main(out_dir: str) -> None:
    anvil = os.environ.get("VOLCAST_ANVIL") or shutil.which("anvil")
    if not anvil:
        sys.exit("anvil not on PATH")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node_proc = subprocess.Popen([anvil, "--host", "127.0.0.1", "--port", str(port), "--no-mining", "--silent"])
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        recorder = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "record", "--venue", "ethereum", "--ws-url",
             f"ws://127.0.0.1:{port}", "--out", out_dir, "--duration", "30"], cwd=ROOT)
        try:
            time.sleep(3)  # connected and subscribed
            traffic(Node(port))
            recorder.wait(timeout=60)
        finally:
            recorder.terminate()
    finally:
        node_proc.terminate()
        node_proc.wait(timeout=10)


if __name__ == "__main__":
    main(sys.argv[1])
