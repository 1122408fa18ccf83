"""Client conformance: web3.py runs the same calls through the chainmux gateway and directly against the node
behind it; every result must be identical, except the fields listed in LEGITIMATE_DIFFERENCES.

    python conformance.py --gateway http://host/rpc/local --node http://anvil --token 0x... \
        [--ws-gateway ws://host/rpc/local --ws-node ws://anvil]

Prints one JSON report on stdout ({"passed": bool, "clients": [...]}) and exits 1 when any check differs or fails,
2 on bad arguments. Run it with the venv scripts/ensure-tools.sh builds from requirements.txt.

Needs a chain with at least one block holding a transaction that emitted a log of `--token` (a DemoToken:
`mint(address,uint256)` open to anyone), and anvil's dev account 7 funded.
"""

import argparse
import asyncio
import json
import sys
import traceback

import web3
from eth_account import Account
from hexbytes import HexBytes
from web3 import AsyncWeb3, Web3
from web3.datastructures import AttributeDict
from web3.providers.persistent import WebSocketProvider

# Anvil's default dev key of account 7 (a public test key of its well-known mnemonic): the JS clients send from
# accounts 5 and 6, so the scripts never race for a nonce.
DEV_KEY = "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356"
# The recipient of the mints sent by the sendRawTransaction check: anvil's account 0, which already holds tokens,
# so both mints change a non-zero balance and use the same gas.
MINT_TO = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def _function(name, inputs, outputs=(), mutability="nonpayable"):
    return {
        "type": "function",
        "name": name,
        "stateMutability": mutability,
        "inputs": [{"name": n, "type": t} for n, t in inputs],
        "outputs": [{"name": "", "type": t} for t in outputs],
    }


TOKEN_ABI = [
    _function("mint", [("to", "address"), ("amount", "uint256")]),
    _function("transfer", [("to", "address"), ("amount", "uint256")], ["bool"]),
    _function("balanceOf", [("owner", "address")], ["uint256"], "view"),
    _function("totalSupply", [], ["uint256"], "view"),
    _function("name", [], ["string"], "view"),
    {
        "type": "event",
        "name": "Transfer",
        "anonymous": False,
        "inputs": [
            {"name": "from", "type": "address", "indexed": True},
            {"name": "to", "type": "address", "indexed": True},
            {"name": "value", "type": "uint256", "indexed": False},
        ],
    },
]

# Fields that legitimately differ between the two sides, and why. Everything else must be identical.
LEGITIMATE_DIFFERENCES = [
    {
        "check": "sendRawTransaction: receipts",
        "fields": [
            "transactionHash",
            "blockHash",
            "blockNumber",
            "blockTimestamp",
            "logs[].transactionHash",
            "logs[].blockHash",
            "logs[].blockNumber",
            "logs[].blockTimestamp",
        ],
        "reason": "two different transactions (consecutive nonces of one account), each mined in its own block",
    },
    {
        "check": "sendRawTransaction: receipts",
        "fields": ["effectiveGasPrice"],
        "reason": "the base fee changes from one block to the next, and the second transaction pays the next block's",
    },
    {
        "check": "eth_subscribe newHeads",
        "fields": ["size", "uncles", "transactions", "withdrawals", "totalDifficulty"],
        "reason": "the gateway pushes the block header, as geth does; anvil adds fields of the whole block (size, "
        "uncles, transactions, withdrawals) and the pre-merge totalDifficulty that a header does not carry",
    },
]
NEW_HEADS_BODY_FIELDS = {"size", "uncles", "transactions", "withdrawals", "totalDifficulty"}


def plain(value):
    """A JSON-comparable copy: bytes as 0x hex, AttributeDicts as dicts."""
    if isinstance(value, (bytes, bytearray, HexBytes)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (dict, AttributeDict)):
        return {str(k): plain(v) for k, v in dict(value).items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return str(value)
    return value


def error_shape(err):
    """An error as something comparable: its type and the node's error (code, message, data)."""
    shape = {"type": type(err).__name__}
    rpc = getattr(err, "rpc_response", None)
    if rpc:
        shape["rpc_error"] = plain(rpc.get("error"))
    data = getattr(err, "data", None)
    if data is not None:
        shape["data"] = plain(data)
    message = getattr(err, "message", None)
    shape["message"] = message if isinstance(message, str) else str(err)
    return shape


def differences(a, b, path="$", out=None, limit=10):
    """Paths where `a` and `b` differ (at most `limit`)."""
    out = [] if out is None else out
    if len(out) >= limit or a == b:
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(dict.fromkeys([*a, *b])):
            differences(a.get(key), b.get(key), f"{path}.{key}", out, limit)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            differences(x, y, f"{path}[{i}]", out, limit)
    else:
        out.append({"path": path, "gateway": a, "node": b})
    return out


class Checker:
    """Runs named checks: each calls fn(side) for "gateway" and then "node" and compares what both returned (a
    raised error counts as a result: its shape is compared)."""

    def __init__(self, client):
        self.client = client
        self.checks = []

    @staticmethod
    def outcome(fn, side):
        try:
            return {"ok": plain(fn(side))}
        except Exception as err:  # noqa: BLE001 - any failure is a result to compare
            return {"error": error_shape(err)}

    def check(self, name, fn, expect_error=False):
        try:
            gateway = self.outcome(fn, "gateway")
            node = self.outcome(fn, "node")
        except Exception:  # noqa: BLE001
            self.fail(name)
            return
        self.record(name, gateway, node, expect_error)

    def record(self, name, gateway, node, expect_error=False):
        diffs = differences(gateway, node)
        problem = None
        if diffs:
            problem = "results differ"
        elif not expect_error and "error" in node:
            problem = f"both sides failed: {json.dumps(node['error'])}"
        elif expect_error and "error" not in node:
            problem = "expected an error from both sides"
        entry = {"name": name, "ok": problem is None}
        if problem:
            entry.update(problem=problem, differences=diffs)
        self.checks.append(entry)

    def fail(self, name):
        self.checks.append({"name": name, "ok": False, "problem": "check aborted: " + traceback.format_exc()})

    def report(self):
        return {"client": self.client, "passed": all(c["ok"] for c in self.checks), "checks": self.checks}


def find_subject(w3, token):
    """A block holding a transaction that emitted a log of the token: the subject of the by-hash checks."""
    logs = w3.eth.get_logs({"address": token, "fromBlock": 0, "toBlock": "latest"})
    if not logs:
        raise SystemExit(f"no logs of {token} on the node: the chain needs traffic first")
    log = logs[-1]
    tx = w3.eth.get_transaction(log["transactionHash"])
    return {"number": log["blockNumber"], "hash": log["blockHash"], "tx": log["transactionHash"], "from": tx["from"]}


def signed_mint(w3, token):
    account = Account.from_key(DEV_KEY)
    contract = w3.eth.contract(address=token, abi=TOKEN_ABI)
    base_fee = w3.eth.get_block("latest")["baseFeePerGas"]
    tx = {
        "type": 2,
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "to": token,
        "gas": 100_000,
        "maxFeePerGas": base_fee * 2 + 10**9,
        "maxPriorityFeePerGas": 10**9,
        "value": 0,
        "data": contract.encode_abi("mint", args=[MINT_TO, 1]),
    }
    return account.sign_transaction(tx).raw_transaction


def run_web3(args):
    c = Checker("web3.py")
    w3 = {
        "gateway": Web3(Web3.HTTPProvider(args.gateway, request_kwargs={"timeout": 20})),
        "node": Web3(Web3.HTTPProvider(args.node, request_kwargs={"timeout": 20})),
    }
    token = Web3.to_checksum_address(args.token)
    s = find_subject(w3["node"], token)
    n, block_hash, tx_hash, sender = s["number"], s["hash"], s["tx"], s["from"]
    contract = {side: w3[side].eth.contract(address=token, abi=TOKEN_ABI) for side in w3}

    def run(name, fn, expect_error=False):
        c.check(name, lambda side: fn(w3[side].eth, side), expect_error)

    run("chain_id", lambda e, _: e.chain_id)
    run("block_number", lambda e, _: e.block_number)
    run("get_block latest", lambda e, _: e.get_block("latest"))
    run("get_block earliest", lambda e, _: e.get_block("earliest"))
    run("get_block safe", lambda e, _: e.get_block("safe"))
    run("get_block finalized", lambda e, _: e.get_block("finalized"))
    run("get_block by number", lambda e, _: e.get_block(n))
    run("get_block by number with txs", lambda e, _: e.get_block(n, full_transactions=True))
    run("get_block by hash", lambda e, _: e.get_block(block_hash))
    run("get_block by hash with txs", lambda e, _: e.get_block(block_hash, full_transactions=True))
    run("get_block unknown", lambda e, _: e.get_block(10_000_000), expect_error=True)
    run("get_block_transaction_count", lambda e, _: e.get_block_transaction_count(n))
    run("get_transaction", lambda e, _: e.get_transaction(tx_hash))
    run("get_transaction_by_block", lambda e, _: e.get_transaction_by_block(n, 0))
    run("get_transaction_receipt", lambda e, _: e.get_transaction_receipt(tx_hash))
    run("get_transaction_receipt unknown", lambda e, _: e.get_transaction_receipt("0x" + "ab" * 32), expect_error=True)
    run("get_logs address", lambda e, _: e.get_logs({"address": token, "fromBlock": 0, "toBlock": "latest"}))
    sender_topic = "0x" + "00" * 12 + sender[2:].lower()
    run(
        "get_logs topics (OR, null)",
        lambda e, _: e.get_logs({"fromBlock": 0, "toBlock": n, "topics": [[TRANSFER_TOPIC], None, [sender_topic]]}),
    )
    run("get_logs address list", lambda e, _: e.get_logs({"address": [token, sender], "fromBlock": 0, "toBlock": n}))
    run("get_logs blockHash", lambda e, _: e.get_logs({"blockHash": block_hash}))
    run("get_logs no match (genesis)", lambda e, _: e.get_logs({"address": token, "fromBlock": 0, "toBlock": 0}))
    run(
        "contract events Transfer.get_logs(to)",
        lambda _, side: contract[side].events.Transfer.get_logs(
            argument_filters={"to": sender}, from_block=0, to_block=n
        ),
    )
    run("get_balance latest", lambda e, _: e.get_balance(sender))
    run("get_balance at block", lambda e, _: e.get_balance(sender, n - 1))
    run("get_code contract", lambda e, _: e.get_code(token))
    run("get_code EOA", lambda e, _: e.get_code(sender))
    for slot in range(4):
        run(f"get_storage_at slot {slot}", lambda e, _, slot=slot: e.get_storage_at(token, slot))
    run("get_transaction_count latest", lambda e, _: e.get_transaction_count(sender))
    run("get_transaction_count at block", lambda e, _: e.get_transaction_count(sender, n - 1))
    run("get_transaction_count pending", lambda e, _: e.get_transaction_count(sender, "pending"))
    run("call balanceOf", lambda _, side: contract[side].functions.balanceOf(sender).call())
    run("call totalSupply at block", lambda _, side: contract[side].functions.totalSupply().call(block_identifier=n))
    run("call name", lambda _, side: contract[side].functions.name().call())
    total_supply = contract["node"].encode_abi("totalSupply")
    run("call raw", lambda e, _: e.call({"to": token, "data": total_supply}))
    run(
        "call reverting",
        lambda _, side: contract[side].functions.transfer(sender, 10**40).call({"from": MINT_TO}),
        expect_error=True,
    )
    mint = contract["node"].encode_abi("mint", args=[MINT_TO, 1])
    run("estimate_gas contract call", lambda e, _: e.estimate_gas({"from": sender, "to": token, "data": mint}))
    run("estimate_gas value transfer", lambda e, _: e.estimate_gas({"from": sender, "to": MINT_TO, "value": 1}))
    run("gas_price", lambda e, _: e.gas_price)
    run("max_priority_fee", lambda e, _: e.max_priority_fee)
    run("fee_history", lambda e, _: e.fee_history(4, "latest", [25, 75]))
    run("fee_history at block", lambda e, _: e.fee_history(2, n, [50]))
    # The raw answer less its id (each provider numbers its own requests).
    run(
        "unknown method",
        lambda _, side: {k: v for k, v in w3[side].provider.make_request("eth_noSuchMethod", []).items() if k != "id"},
    )

    def batch(side):
        with w3[side].batch_requests() as b:
            b.add(w3[side].eth.get_block(n))
            b.add(w3[side].eth.get_balance(sender))
            b.add(w3[side].eth.get_transaction_receipt(tx_hash))
            b.add(w3[side].eth.get_logs({"blockHash": block_hash}))
            b.add(w3[side].eth.get_transaction_count(sender, n))
            b.add(contract[side].functions.balanceOf(sender))
            return b.execute()

    c.check("batch_requests", batch)

    send_raw_transactions(c, w3, token)
    if args.ws_gateway:
        asyncio.run(subscriptions(c, args, w3["node"], token))
    return c.report()


def send_raw_transactions(c, w3, token):
    """Sends one signed mint through the gateway and one to the node, compares the receipts (less the fields that
    must differ), and reads each transaction back through both sides."""
    name = "sendRawTransaction"
    try:
        hashes, receipts = {}, {}
        for side in ("gateway", "node"):
            raw = signed_mint(w3["node"], token)
            hashes[side] = w3[side].eth.send_raw_transaction(raw)
            expected = Web3.keccak(raw)
            if hashes[side] != expected:
                raise AssertionError(f"{side} answered hash {hashes[side].hex()}, the signed tx is {expected.hex()}")
            receipts[side] = plain(w3[side].eth.wait_for_transaction_receipt(hashes[side], timeout=20, poll_latency=0.05))

        differing = {"transactionHash", "blockHash", "blockNumber", "blockTimestamp", "effectiveGasPrice"}
        log_differing = {"transactionHash", "blockHash", "blockNumber", "blockTimestamp"}

        def comparable(receipt):
            out = {k: v for k, v in receipt.items() if k not in differing}
            out["logs"] = [{k: v for k, v in log.items() if k not in log_differing} for log in receipt["logs"]]
            return out

        c.record(f"{name}: receipts", {"ok": comparable(receipts["gateway"])}, {"ok": comparable(receipts["node"])})
        if receipts["gateway"].get("status") != 1:
            c.checks.append({"name": f"{name}: status", "ok": False, "problem": f"mint failed: {receipts['gateway']}"})
        for label, tx in (("sent through the gateway", hashes["gateway"]), ("sent to the node", hashes["node"])):
            c.check(f"{name}: get_transaction of the tx {label}", lambda side, tx=tx: w3[side].eth.get_transaction(tx))
            c.check(
                f"{name}: get_transaction_receipt of the tx {label}",
                lambda side, tx=tx: w3[side].eth.get_transaction_receipt(tx),
            )
        c.check(f"{name}: latest block with txs afterwards", lambda side: w3[side].eth.get_block("latest", True))
    except Exception:  # noqa: BLE001
        c.fail(name)


async def subscriptions(c, args, node_w3, token):
    """Subscribes to newHeads and to the token's logs on both sides, sends one mint, and compares the head of the
    mint's block and the mint's log as each side pushed them. Other pushes are not compared: the gateway serves
    subscriptions from its indexer's stream, which may still be delivering blocks mined just before the
    subscription (the node only pushes what comes after it)."""
    name = "eth_subscribe"
    urls = {"gateway": args.ws_gateway, "node": args.ws_node}
    sockets = {}
    try:
        subs = {}
        for side, url in urls.items():
            sockets[side] = await AsyncWeb3(WebSocketProvider(url))
            heads = await sockets[side].eth.subscribe("newHeads")
            logs = await sockets[side].eth.subscribe("logs", {"address": token})
            subs[side] = {heads: "newHeads", logs: "logs"}
        await asyncio.sleep(0.3)
        raw = signed_mint(node_w3, token)
        receipt = node_w3.eth.wait_for_transaction_receipt(node_w3.eth.send_raw_transaction(raw))
        number, tx_hash = receipt["blockNumber"], plain(receipt["transactionHash"])

        async def the_mints(side):
            got = {}
            async for message in sockets[side].socket.process_subscriptions():
                kind = subs[side].get(message["subscription"])
                item = plain(message["result"])
                if kind == "newHeads" and item.get("number") == number:
                    got[kind] = {k: v for k, v in item.items() if k not in NEW_HEADS_BODY_FIELDS}
                elif kind == "logs" and item.get("transactionHash") == tx_hash:
                    got[kind] = item
                if len(got) == 2:
                    return got

        got = {}
        for side in urls:
            got[side] = await asyncio.wait_for(the_mints(side), 20)
        for kind in ("newHeads", "logs"):
            c.record(f"{name} {kind}", {"ok": got["gateway"][kind]}, {"ok": got["node"][kind]})
    except Exception:  # noqa: BLE001
        c.fail(name)
    finally:
        for socket in sockets.values():
            await socket.provider.disconnect()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--ws-gateway")
    parser.add_argument("--ws-node")
    args = parser.parse_args()
    if bool(args.ws_gateway) != bool(args.ws_node):
        parser.error("--ws-gateway and --ws-node go together")
    try:
        clients = [run_web3(args)]
    except Exception:  # noqa: BLE001
        clients = [{"client": "web3.py", "passed": False, "checks": [{"name": "setup", "ok": False, "problem": traceback.format_exc()}]}]
    passed = all(r["passed"] for r in clients)
    report = {
        "passed": passed,
        "subscriptions": "checked" if args.ws_gateway else "not checked (no --ws-gateway)",
        "versions": {"web3": web3.__version__},
        "legitimate_differences": LEGITIMATE_DIFFERENCES,
        "clients": clients,
    }
    print(json.dumps(report, indent=2, default=str))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
