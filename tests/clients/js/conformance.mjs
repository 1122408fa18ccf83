// Client conformance: viem and ethers run the same calls through the chainmux gateway and directly against the
// node behind it; every result must be identical, except the fields listed in LEGITIMATE_DIFFERENCES.
//
//   node conformance.mjs --gateway http://host/rpc/local --node http://anvil --token 0x… \
//       [--ws-gateway ws://host/rpc/local --ws-node ws://anvil] [--only viem|ethers]
//
// Prints one JSON report on stdout ({"passed": bool, "clients": [...]}) and exits 1 when any check differs or
// fails, 2 on bad arguments. The libraries are loaded from $CHAINMUX_CLIENTS_JS_DIR (where
// scripts/ensure-tools.sh runs `npm ci` with this directory's package-lock.json), else from this directory.
//
// Needs a chain with at least one block holding a transaction that emitted a log of `--token` (a DemoToken:
// `mint(address,uint256)` open to anyone), and anvil's dev accounts 5 (viem) and 6 (ethers) funded.

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(process.env.CHAINMUX_CLIENTS_JS_DIR || here, 'package.json'));
const viem = require('viem');
const { privateKeyToAccount } = require('viem/accounts');
const ethers = require('ethers');

// Anvil's default dev keys (public test keys of its well-known mnemonic); each client sends from its own account
// so the scripts never race for a nonce.
const DEV_KEYS = {
  viem: '0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba', // account 5
  ethers: '0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e', // account 6
};
// The recipient of the mints sent by the sendRawTransaction check: anvil's account 0, which already holds
// tokens, so both mints change a non-zero balance and use the same gas.
const MINT_TO = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';
const TRANSFER_TOPIC = '0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef';
const TOKEN_SIGNATURES = [
  'function mint(address to, uint256 amount)',
  'function transfer(address to, uint256 amount) returns (bool)',
  'function balanceOf(address) view returns (uint256)',
  'function totalSupply() view returns (uint256)',
  'function name() view returns (string)',
  'event Transfer(address indexed from, address indexed to, uint256 value)',
];
const TOKEN_ABI = viem.parseAbi(TOKEN_SIGNATURES);

// Fields that legitimately differ between the two sides, and why. Everything else must be identical.
const LEGITIMATE_DIFFERENCES = [
  {
    check: 'sendRawTransaction: receipts',
    fields: ['hash/transactionHash', 'blockHash', 'blockNumber', 'blockTimestamp', 'logs[].transactionHash', 'logs[].blockHash',
      'logs[].blockNumber', 'logs[].blockTimestamp'],
    reason: 'two different transactions (consecutive nonces of one account), each mined in its own block',
  },
  {
    check: 'sendRawTransaction: receipts',
    fields: ['effectiveGasPrice (viem) / gasPrice (ethers)'],
    reason: "the base fee changes from one block to the next, and the second transaction pays the next block's",
  },
  {
    check: 'eth_subscribe newHeads',
    fields: ['size', 'uncles', 'transactions', 'withdrawals', 'totalDifficulty'],
    reason: 'the gateway pushes the block header, as geth does; anvil adds fields of the whole block ' +
      '(size, uncles, transactions, withdrawals) and the pre-merge totalDifficulty that a header does not carry',
  },
];
const NEW_HEADS_BODY_FIELDS = ['size', 'uncles', 'transactions', 'withdrawals', 'totalDifficulty'];

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (!flag.startsWith('--') || value === undefined) usage(`bad argument ${flag}`);
    args[flag.slice(2)] = value;
  }
  for (const required of ['gateway', 'node', 'token']) if (!args[required]) usage(`--${required} is required`);
  if (Boolean(args['ws-gateway']) !== Boolean(args['ws-node'])) usage('--ws-gateway and --ws-node go together');
  return args;
}

function usage(message) {
  console.error(`${message}\nusage: node conformance.mjs --gateway URL --node URL --token ADDRESS ` +
    '[--ws-gateway URL --ws-node URL] [--only viem|ethers]');
  process.exit(2);
}

// A JSON-comparable copy: bigints as decimal strings, ethers objects through their toJSON, no functions and no
// back-references to the provider.
function plain(value) {
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || value === undefined) return value ?? null;
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object') {
    if (typeof value.toJSON === 'function' && !(value instanceof Date)) return plain(value.toJSON());
    const out = {};
    for (const [key, inner] of Object.entries(value)) {
      if (typeof inner === 'function' || key === 'provider') continue;
      out[key] = plain(inner);
    }
    return out;
  }
  return value;
}

// An error as something comparable: what a caller can branch on, without the parts that name the URL.
function errorShape(err) {
  if (err?.walk) {
    // viem: the error's kind, and the node's JSON-RPC error deep inside it (code, message, revert data).
    const rpc = err.walk((e) => typeof e.code === 'number');
    return {
      name: err.name,
      shortMessage: err.shortMessage ?? null,
      rpc: rpc ? { name: rpc.name, code: rpc.code, data: plain(rpc.data) ?? null, details: rpc.details ?? null } : null,
    };
  }
  // ethers: its error code, and the revert data and reason it decoded.
  return {
    code: err?.code ?? null,
    shortMessage: err?.shortMessage ?? String(err),
    data: err?.data ?? null,
    reason: err?.reason ?? null,
    revert: plain(err?.revert) ?? null,
  };
}

// Paths where `a` and `b` differ (at most `max`).
function differences(a, b, path = '$', out = [], max = 10) {
  if (out.length >= max) return out;
  if (isDeepStrictEqual(a, b)) return out;
  const bothObjects = a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b);
  if (!bothObjects) {
    out.push({ path, gateway: a, node: b });
    return out;
  }
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) differences(a[key], b[key], `${path}.${key}`, out, max);
  return out;
}

function omit(value, fields) {
  const out = { ...value };
  for (const field of fields) delete out[field];
  return out;
}

// Runs the named checks of one client. `check(name, fn)` calls fn(side) for the gateway and then the node
// ("gateway" | "node"), and compares what both returned (a thrown error counts as a result: its shape is compared).
class Checker {
  constructor(client) {
    this.client = client;
    this.checks = [];
  }

  async outcome(fn, side) {
    try {
      return { ok: plain(await fn(side)) };
    } catch (err) {
      return { error: errorShape(err) };
    }
  }

  async check(name, fn, { expectError = false } = {}) {
    const gateway = await this.outcome(fn, 'gateway');
    const node = await this.outcome(fn, 'node');
    this.record(name, gateway, node, expectError);
    return [gateway.ok, node.ok];
  }

  record(name, gateway, node, expectError = false) {
    const diffs = differences(gateway, node);
    let problem = null;
    if (diffs.length) problem = 'results differ';
    else if (!expectError && node.error) problem = `both sides failed: ${JSON.stringify(node.error)}`;
    else if (expectError && !node.error) problem = 'expected an error from both sides';
    this.checks.push(problem ? { name, ok: false, problem, differences: diffs } : { name, ok: true });
  }

  fail(name, err) {
    this.checks.push({ name, ok: false, problem: `check aborted: ${err?.stack ?? err}` });
  }

  report() {
    return { client: this.client, passed: this.checks.every((c) => c.ok), checks: this.checks };
  }
}

// Finds a block holding a transaction that emitted a log of the token: the subject of the by-hash checks.
async function findSubject(nodeUrl, token) {
  const client = viem.createPublicClient({ transport: viem.http(nodeUrl) });
  const logs = await client.getLogs({ address: token, fromBlock: 0n, toBlock: 'latest' });
  if (!logs.length) throw new Error(`no logs of ${token} on the node: the chain needs traffic first`);
  const log = logs[logs.length - 1];
  const tx = await client.getTransaction({ hash: log.transactionHash });
  return { blockNumber: log.blockNumber, blockHash: log.blockHash, txHash: log.transactionHash, from: tx.from, to: tx.to, firstLogBlock: logs[0].blockNumber };
}

const topicOf = (address) => viem.pad(address.toLowerCase());

async function runViem(args, subject) {
  const c = new Checker('viem');
  const transport = (url, batch = false) => viem.http(url, { batch, retryCount: 0 });
  const clients = {
    gateway: viem.createPublicClient({ transport: transport(args.gateway) }),
    node: viem.createPublicClient({ transport: transport(args.node) }),
  };
  const batched = {
    gateway: viem.createPublicClient({ transport: transport(args.gateway, { batchSize: 50, wait: 5 }) }),
    node: viem.createPublicClient({ transport: transport(args.node, { batchSize: 50, wait: 5 }) }),
  };
  const token = args.token;
  const { blockNumber: n, blockHash, txHash, from } = subject;
  const run = async (name, fn, opts) => {
    try {
      return await c.check(name, (side) => fn(clients[side], side), opts);
    } catch (err) {
      c.fail(name, err);
      return [];
    }
  };

  await run('eth_chainId', (cl) => cl.getChainId());
  await run('eth_blockNumber', (cl) => cl.getBlockNumber({ cacheTime: 0 }));
  await run('getBlock latest', (cl) => cl.getBlock({ blockTag: 'latest' }));
  await run('getBlock earliest', (cl) => cl.getBlock({ blockTag: 'earliest' }));
  await run('getBlock safe', (cl) => cl.getBlock({ blockTag: 'safe' }));
  await run('getBlock finalized', (cl) => cl.getBlock({ blockTag: 'finalized' }));
  await run('getBlock by number', (cl) => cl.getBlock({ blockNumber: n }));
  await run('getBlock by number with txs', (cl) => cl.getBlock({ blockNumber: n, includeTransactions: true }));
  await run('getBlock by hash', (cl) => cl.getBlock({ blockHash }));
  await run('getBlock by hash with txs', (cl) => cl.getBlock({ blockHash, includeTransactions: true }));
  await run('getBlock unknown number', (cl) => cl.getBlock({ blockNumber: 10_000_000n }), { expectError: true });
  await run('getBlockTransactionCount', (cl) => cl.getBlockTransactionCount({ blockNumber: n }));
  await run('getTransaction', (cl) => cl.getTransaction({ hash: txHash }));
  await run('getTransaction by block and index', (cl) => cl.getTransaction({ blockNumber: n, index: 0 }));
  await run('getTransactionReceipt', (cl) => cl.getTransactionReceipt({ hash: txHash }));
  await run('getTransactionReceipt unknown', (cl) => cl.getTransactionReceipt({ hash: `0x${'ab'.repeat(32)}` }), { expectError: true });
  await run('getLogs address', (cl) => cl.getLogs({ address: token, fromBlock: 0n, toBlock: 'latest' }));
  await run('getLogs event + indexed arg', (cl) =>
    cl.getLogs({ address: token, event: TOKEN_ABI[5], args: { to: from }, fromBlock: 0n, toBlock: n }));
  await run('getLogs blockHash', (cl) => cl.getLogs({ blockHash }));
  await run('getLogs raw topics (OR, null)', (cl) =>
    cl.request({ method: 'eth_getLogs', params: [{ fromBlock: '0x0', toBlock: viem.toHex(n), topics: [[TRANSFER_TOPIC], null, [topicOf(from)]] }] }));
  await run('getLogs no match (genesis)', (cl) => cl.getLogs({ address: token, fromBlock: 0n, toBlock: 0n }));
  await run('getLogs beyond the head', (cl) => cl.getLogs({ address: token, fromBlock: n + 1000n, toBlock: n + 1000n }), { expectError: true });
  await run('getBalance latest', (cl) => cl.getBalance({ address: from }));
  await run('getBalance at block', (cl) => cl.getBalance({ address: from, blockNumber: n - 1n }));
  await run('getCode contract', (cl) => cl.getCode({ address: token }));
  await run('getCode EOA', (cl) => cl.getCode({ address: from }));
  for (const slot of [0n, 1n, 2n, 3n]) {
    await run(`getStorageAt slot ${slot}`, (cl) => cl.getStorageAt({ address: token, slot: viem.toHex(slot, { size: 32 }) }));
  }
  await run('getTransactionCount latest', (cl) => cl.getTransactionCount({ address: from }));
  await run('getTransactionCount at block', (cl) => cl.getTransactionCount({ address: from, blockNumber: n - 1n }));
  await run('getTransactionCount pending', (cl) => cl.getTransactionCount({ address: from, blockTag: 'pending' }));
  await run('call balanceOf', (cl) => cl.readContract({ address: token, abi: TOKEN_ABI, functionName: 'balanceOf', args: [from] }));
  await run('call totalSupply at block', (cl) => cl.readContract({ address: token, abi: TOKEN_ABI, functionName: 'totalSupply', blockNumber: n }));
  await run('call name', (cl) => cl.readContract({ address: token, abi: TOKEN_ABI, functionName: 'name' }));
  await run('call raw', (cl) => cl.call({ to: token, data: viem.encodeFunctionData({ abi: TOKEN_ABI, functionName: 'totalSupply' }) }));
  await run('call reverting', (cl) =>
    cl.simulateContract({ address: token, abi: TOKEN_ABI, functionName: 'transfer', args: [from, 10n ** 40n], account: MINT_TO }), { expectError: true });
  await run('estimateGas contract call', (cl) =>
    cl.estimateGas({ account: from, to: token, data: viem.encodeFunctionData({ abi: TOKEN_ABI, functionName: 'mint', args: [MINT_TO, 1n] }) }));
  await run('estimateGas value transfer', (cl) => cl.estimateGas({ account: from, to: MINT_TO, value: 1n }));
  await run('gasPrice', (cl) => cl.getGasPrice());
  await run('estimateFeesPerGas', (cl) => cl.estimateFeesPerGas());
  await run('estimateMaxPriorityFeePerGas', (cl) => cl.estimateMaxPriorityFeePerGas());
  await run('feeHistory', (cl) => cl.getFeeHistory({ blockCount: 4, rewardPercentiles: [25, 75] }));
  await run('feeHistory at block', (cl) => cl.getFeeHistory({ blockCount: 2, blockNumber: n, rewardPercentiles: [50] }));
  await run('unknown method', (cl) => cl.request({ method: 'eth_noSuchMethod', params: [] }), { expectError: true });

  // A batch: viem's HTTP transport sends these as one JSON-RPC array.
  try {
    await c.check('batch (http transport batch: true)', (side) => {
      const cl = batched[side];
      return Promise.all([
        cl.getBlockNumber({ cacheTime: 0 }),
        cl.getBalance({ address: from }),
        cl.getBlock({ blockNumber: n }),
        cl.getTransactionReceipt({ hash: txHash }),
        cl.readContract({ address: token, abi: TOKEN_ABI, functionName: 'balanceOf', args: [from] }),
        cl.getLogs({ blockHash }),
        cl.request({ method: 'eth_noSuchMethod', params: [] }).catch((err) => ({ failed: errorShape(err) })),
      ]);
    });
  } catch (err) {
    c.fail('batch (http transport batch: true)', err);
  }

  await sendRawTransactions(c, {
    sign: async (side) => {
      const account = privateKeyToAccount(DEV_KEYS.viem);
      const nonce = await clients.node.getTransactionCount({ address: account.address, blockTag: 'pending' });
      const block = await clients.node.getBlock();
      return account.signTransaction({
        type: 'eip1559', chainId: await clients.node.getChainId(), nonce, to: token, gas: 100_000n,
        maxFeePerGas: block.baseFeePerGas * 2n + 1_000_000_000n, maxPriorityFeePerGas: 1_000_000_000n,
        data: viem.encodeFunctionData({ abi: TOKEN_ABI, functionName: 'mint', args: [MINT_TO, 1n] }),
      });
    },
    send: (side, raw) => clients[side].sendRawTransaction({ serializedTransaction: raw }),
    receipt: (side, hash) => clients[side].waitForTransactionReceipt({ hash, pollingInterval: 50, timeout: 20_000 }),
    getTransaction: (side, hash) => clients[side].getTransaction({ hash }),
    latest: (side) => clients[side].getBlock({ blockTag: 'latest', includeTransactions: true }),
  });

  if (args['ws-gateway']) {
    const ws = {
      gateway: viem.createPublicClient({ transport: viem.webSocket(args['ws-gateway'], { retryCount: 0 }) }),
      node: viem.createPublicClient({ transport: viem.webSocket(args['ws-node'], { retryCount: 0 }) }),
    };
    const stops = [];
    await subscriptions(c, {
      // viem uses eth_subscribe over a WebSocket transport for both watchers.
      heads: (side, push) => {
        stops.push(ws[side].watchBlocks({ emitOnBegin: false, onBlock: push, onError: (err) => push({ error: String(err) }) }));
      },
      logs: (side, push) => {
        stops.push(ws[side].watchEvent({ address: token, event: TOKEN_ABI[5], onLogs: (ls) => ls.forEach(push), onError: (err) => push({ error: String(err) }) }));
      },
      trigger: () => mintFromNode(clients.node, DEV_KEYS.viem, token),
      close: async () => {
        stops.forEach((stop) => stop());
        for (const cl of Object.values(ws)) (await cl.transport.getRpcClient()).close();
      },
    });
  }
  return c.report();
}

async function runEthers(args, subject) {
  const c = new Checker('ethers');
  // batchMaxCount 1: one HTTP request per call; the batching provider below groups concurrent calls.
  const provider = (url, options = { batchMaxCount: 1 }) =>
    new ethers.JsonRpcProvider(url, undefined, { staticNetwork: true, cacheTimeout: -1, ...options });
  const providers = { gateway: provider(args.gateway), node: provider(args.node) };
  const batched = {
    gateway: provider(args.gateway, { batchMaxCount: 50, batchStallTime: 5 }),
    node: provider(args.node, { batchMaxCount: 50, batchStallTime: 5 }),
  };
  const token = args.token;
  const iface = new ethers.Interface(TOKEN_SIGNATURES);
  const { blockNumber, blockHash, txHash, from } = subject;
  const n = Number(blockNumber);
  const run = async (name, fn, opts) => {
    try {
      return await c.check(name, (side) => fn(providers[side], side), opts);
    } catch (err) {
      c.fail(name, err);
      return [];
    }
  };
  const tokenContract = (p) => new ethers.Contract(token, iface, p);

  await run('getNetwork', async (p) => (await p.getNetwork()).chainId);
  await run('eth_chainId', (p) => p.send('eth_chainId', []));
  await run('getBlockNumber', (p) => p.getBlockNumber());
  await run('getBlock latest', (p) => p.getBlock('latest'));
  await run('getBlock earliest', (p) => p.getBlock('earliest'));
  await run('getBlock safe', (p) => p.getBlock('safe'));
  await run('getBlock finalized', (p) => p.getBlock('finalized'));
  await run('getBlock by number', (p) => p.getBlock(n));
  await run('getBlock by number with txs', async (p) => {
    const block = await p.getBlock(n, true);
    return { block, transactions: block.prefetchedTransactions };
  });
  await run('getBlock by hash', (p) => p.getBlock(blockHash));
  await run('getBlock by hash with txs', async (p) => (await p.getBlock(blockHash, true)).prefetchedTransactions);
  await run('getBlock unknown number', (p) => p.getBlock(10_000_000));
  await run('getTransaction', (p) => p.getTransaction(txHash));
  await run('getTransactionReceipt', (p) => p.getTransactionReceipt(txHash));
  await run('getTransactionReceipt unknown', (p) => p.getTransactionReceipt(`0x${'ab'.repeat(32)}`));
  await run('getLogs address', (p) => p.getLogs({ address: token, fromBlock: 0, toBlock: 'latest' }));
  await run('getLogs topics (OR, null)', (p) =>
    p.getLogs({ fromBlock: 0, toBlock: n, topics: [[TRANSFER_TOPIC], null, [ethers.zeroPadValue(from, 32)]] }));
  await run('getLogs address list', (p) => p.getLogs({ address: [token, from], fromBlock: 0, toBlock: n }));
  await run('getLogs blockHash', (p) => p.getLogs({ blockHash }));
  await run('queryFilter Transfer(to)', (p) => tokenContract(p).queryFilter(tokenContract(p).filters.Transfer(null, from), 0, n));
  await run('getBalance latest', (p) => p.getBalance(from));
  await run('getBalance at block', (p) => p.getBalance(from, n - 1));
  await run('getCode contract', (p) => p.getCode(token));
  await run('getCode EOA', (p) => p.getCode(from));
  for (const slot of [0, 1, 2, 3]) await run(`getStorage slot ${slot}`, (p) => p.getStorage(token, slot));
  await run('getTransactionCount latest', (p) => p.getTransactionCount(from));
  await run('getTransactionCount at block', (p) => p.getTransactionCount(from, n - 1));
  await run('getTransactionCount pending', (p) => p.getTransactionCount(from, 'pending'));
  await run('call balanceOf', (p) => tokenContract(p).balanceOf(from));
  await run('call totalSupply at block', (p) => tokenContract(p).totalSupply({ blockTag: n }));
  await run('call name', (p) => tokenContract(p).name());
  await run('call raw', (p) => p.call({ to: token, data: iface.encodeFunctionData('totalSupply', []) }));
  await run('call reverting', (p) => tokenContract(p).transfer.staticCall(from, 10n ** 40n, { from: MINT_TO }), { expectError: true });
  await run('estimateGas contract call', (p) => p.estimateGas({ from, to: token, data: iface.encodeFunctionData('mint', [MINT_TO, 1n]) }));
  await run('estimateGas value transfer', (p) => p.estimateGas({ from, to: MINT_TO, value: 1n }));
  await run('estimateGas reverting', (p) =>
    p.estimateGas({ from: MINT_TO, to: token, data: iface.encodeFunctionData('transfer', [from, 10n ** 40n]) }), { expectError: true });
  await run('getFeeData', (p) => p.getFeeData());
  await run('eth_gasPrice', (p) => p.send('eth_gasPrice', []));
  await run('eth_feeHistory', (p) => p.send('eth_feeHistory', ['0x4', 'latest', [25, 75]]));
  await run('eth_maxPriorityFeePerGas', (p) => p.send('eth_maxPriorityFeePerGas', []));
  await run('unknown method', (p) => p.send('eth_noSuchMethod', []), { expectError: true });

  // A batch: ethers groups the calls made within batchStallTime into one JSON-RPC array.
  try {
    await c.check('batch (JsonRpcProvider batching)', (side) => {
      const p = batched[side];
      return Promise.all([
        p.getBlockNumber(),
        p.getBalance(from),
        p.getBlock(n),
        p.getTransactionReceipt(txHash),
        tokenContract(p).balanceOf(from),
        p.getLogs({ blockHash }),
        p.send('eth_noSuchMethod', []).catch((err) => ({ failed: errorShape(err) })),
      ]);
    });
  } catch (err) {
    c.fail('batch (JsonRpcProvider batching)', err);
  }

  const wallet = new ethers.Wallet(DEV_KEYS.ethers);
  await sendRawTransactions(c, {
    sign: async () => {
      const block = await providers.node.getBlock('latest');
      return wallet.signTransaction({
        type: 2, chainId: (await providers.node.getNetwork()).chainId, to: token, gasLimit: 100_000n,
        nonce: await providers.node.getTransactionCount(wallet.address, 'pending'),
        maxFeePerGas: block.baseFeePerGas * 2n + 1_000_000_000n, maxPriorityFeePerGas: 1_000_000_000n,
        data: iface.encodeFunctionData('mint', [MINT_TO, 1n]),
      });
    },
    send: async (side, raw) => (await providers[side].broadcastTransaction(raw)).hash,
    receipt: (side, hash) => providers[side].waitForTransaction(hash, 1, 20_000),
    getTransaction: (side, hash) => providers[side].getTransaction(hash),
    latest: async (side) => (await providers[side].getBlock('latest', true)).prefetchedTransactions,
  });

  if (args['ws-gateway']) {
    const ws = {
      gateway: new ethers.WebSocketProvider(args['ws-gateway'], undefined, { staticNetwork: true }),
      node: new ethers.WebSocketProvider(args['ws-node'], undefined, { staticNetwork: true }),
    };
    await subscriptions(c, {
      // The block number comes from a newHeads subscription; the header is then read over the same socket.
      heads: async (side, push) => {
        await ws[side].on('block', async (number) => push(await ws[side].getBlock(number)));
      },
      logs: async (side, push) => {
        await ws[side].on({ address: token, topics: [TRANSFER_TOPIC] }, push);
      },
      trigger: async () => {
        const cl = viem.createPublicClient({ transport: viem.http(args.node) });
        return mintFromNode(cl, DEV_KEYS.ethers, token);
      },
      close: async () => {
        for (const p of Object.values(ws)) await p.destroy();
      },
    });
  }
  return c.report();
}

// Signs one mint per side (both with the client's own dev key), sends one through the gateway and one to the node,
// then compares the receipts (less the fields that must differ), and reads each transaction back through both
// sides.
async function sendRawTransactions(c, ops) {
  const name = 'sendRawTransaction';
  try {
    const hashes = {};
    const receipts = {};
    for (const side of ['gateway', 'node']) {
      const raw = await ops.sign(side);
      hashes[side] = await ops.send(side, raw);
      const expected = viem.keccak256(raw);
      if (hashes[side] !== expected) throw new Error(`${side} answered hash ${hashes[side]}, the signed tx is ${expected}`);
      receipts[side] = plain(await ops.receipt(side, hashes[side]));
    }
    const differing = ['transactionHash', 'hash', 'blockHash', 'blockNumber', 'blockTimestamp', 'effectiveGasPrice', 'gasPrice'];
    const comparable = (r) => ({
      ...omit(r, differing),
      logs: r.logs.map((log) => omit(log, ['transactionHash', 'blockHash', 'blockNumber', 'blockTimestamp'])),
    });
    c.record(`${name}: receipts`, { ok: comparable(receipts.gateway) }, { ok: comparable(receipts.node) });
    if (receipts.gateway.status !== 'success' && receipts.gateway.status !== 1) {
      c.checks.push({ name: `${name}: status`, ok: false, problem: `mint failed: ${JSON.stringify(receipts.gateway)}` });
    }
    for (const [label, hash] of [['sent through the gateway', hashes.gateway], ['sent to the node', hashes.node]]) {
      await c.check(`${name}: getTransaction of the tx ${label}`, (side) => ops.getTransaction(side, hash));
      await c.check(`${name}: getTransactionReceipt of the tx ${label}`, (side) => ops.receipt(side, hash));
    }
    await c.check(`${name}: latest block with txs afterwards`, (side) => ops.latest(side));
  } catch (err) {
    c.fail(name, err);
  }
}

// Subscribes to newHeads and to the token's logs on both sides, sends one mint, and compares the head of the
// mint's block and the mint's log as each side pushed them. Other pushes are not compared: the gateway serves
// subscriptions from its indexer's stream, which may still be delivering blocks mined just before the
// subscription (the node only pushes what comes after it).
async function subscriptions(c, ops) {
  const name = 'eth_subscribe';
  try {
    const seen = { gateway: { heads: [], logs: [] }, node: { heads: [], logs: [] } };
    for (const side of ['gateway', 'node']) {
      await ops.heads(side, (head) => seen[side].heads.push(plain(head)));
      await ops.logs(side, (log) => seen[side].logs.push(plain(log)));
    }
    // Let both subscriptions reach the servers before the block that should be pushed.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const receipt = await ops.trigger();
    // Block numbers are bigints in viem and numbers in ethers; plain() writes bigints as "123n".
    const asBig = (value) => BigInt(typeof value === 'string' ? value.replace(/n$/, '') : value);
    const number = asBig(receipt.blockNumber);
    const find = async (side, what, pick) => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const found = seen[side][what].find(pick);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`${side} pushed no ${what} item for block ${number} within 20 s`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    const heads = {};
    const logs = {};
    for (const side of ['gateway', 'node']) {
      heads[side] = omit(await find(side, 'heads', (h) => h.number != null && asBig(h.number) === number), NEW_HEADS_BODY_FIELDS);
      logs[side] = await find(side, 'logs', (l) => l.transactionHash === receipt.transactionHash);
    }
    c.record(`${name} newHeads`, { ok: heads.gateway }, { ok: heads.node });
    c.record(`${name} logs`, { ok: logs.gateway }, { ok: logs.node });
  } catch (err) {
    c.fail(name, err);
  } finally {
    await ops.close().catch(() => {});
  }
}

async function mintFromNode(client, key, token) {
  const account = privateKeyToAccount(key);
  const block = await client.getBlock();
  const raw = await account.signTransaction({
    type: 'eip1559', chainId: await client.getChainId(), to: token, gas: 100_000n,
    nonce: await client.getTransactionCount({ address: account.address, blockTag: 'pending' }),
    maxFeePerGas: block.baseFeePerGas * 2n + 1_000_000_000n, maxPriorityFeePerGas: 1_000_000_000n,
    data: viem.encodeFunctionData({ abi: TOKEN_ABI, functionName: 'mint', args: [MINT_TO, 1n] }),
  });
  const hash = await client.sendRawTransaction({ serializedTransaction: raw });
  return client.waitForTransactionReceipt({ hash, pollingInterval: 50 });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const subject = await findSubject(args.node, args.token);
  const runners = { viem: runViem, ethers: runEthers };
  const clients = [];
  for (const [name, runner] of Object.entries(runners)) {
    if (args.only && args.only !== name) continue;
    try {
      clients.push(await runner(args, subject));
    } catch (err) {
      clients.push({ client: name, passed: false, checks: [{ name: 'setup', ok: false, problem: String(err?.stack ?? err) }] });
    }
  }
  const passed = clients.length > 0 && clients.every((r) => r.passed);
  const report = {
    passed,
    subscriptions: args['ws-gateway'] ? 'checked' : 'not checked (no --ws-gateway)',
    versions: { viem: require('viem/package.json').version, ethers: ethers.version },
    legitimate_differences: LEGITIMATE_DIFFERENCES,
    clients,
  };
  console.log(JSON.stringify(report, null, 2));
  process.exit(passed ? 0 : 1);
}

main().catch((err) => {
  console.error(err?.stack ?? err);
  process.exit(1);
});
