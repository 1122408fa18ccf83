//! Throughput of ABI-decoding contract events: the CPU work the indexer's [`EventDecoder`] adds to every batch.
//!
//! `cargo bench -p chainmux-evm --bench decode [-- --seconds N]` builds blocks of logs in memory (encoded with
//! `alloy::sol!`, as a node would serve them) and decodes them as the indexer does, for:
//!
//! - `erc20 1 of 51`: ERC-20 `Transfer` logs of 51 tokens, one of them watched (most logs are skipped by address);
//! - `erc20 watched only`: the same event, every log of the watched token (the cost per decoded event);
//! - `complex`: an event with an indexed `string`, a tuple array, a `string` and `bytes`, every log watched;
//! - `factory 10k children`: a factory entry with 10,000 known children, Uniswap-V3-like `Swap` logs spread over
//!   them.
//!
//! Per case it prints decoded events/s and logs scanned/s (best of several runs, each run decoding every block
//! once) and the ratio of that time to just iterating over the same logs. Every run checks the number of events
//! decoded, and the last one checks each event's arguments against the values encoded.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::json_abi::{Event, JsonAbi};
use alloy::primitives::{Address, Bytes, I256, LogData, U160, U256, aliases::I24, keccak256};
use alloy::sol_types::SolEvent;
use chainmux_core::{BlockDecoder, BlockPtr, Log, NormalizedBlock};
use chainmux_evm::{ContractSource, EventDecoder, SourceTarget};

mod abi {
    alloy::sol! {
        event Transfer(address indexed from, address indexed to, uint256 value);

        struct Fill { uint128 price; uint64 amount; address taker; bool buy; }
        event OrderFilled(string indexed market, address indexed maker, Fill[] fills, string memo, bytes payload);

        event Swap(
            address indexed sender, address indexed recipient, int256 amount0, int256 amount1,
            uint160 sqrtPriceX96, uint128 liquidity, int24 tick
        );
    }
}

/// The ERC-20 events (the watched token's ABI).
const ERC20_ABI: &str = r#"[
  {"type":"event","name":"Transfer","anonymous":false,"inputs":[
    {"name":"from","type":"address","indexed":true},{"name":"to","type":"address","indexed":true},
    {"name":"value","type":"uint256","indexed":false}]},
  {"type":"event","name":"Approval","anonymous":false,"inputs":[
    {"name":"owner","type":"address","indexed":true},{"name":"spender","type":"address","indexed":true},
    {"name":"value","type":"uint256","indexed":false}]}
]"#;

/// `OrderFilled` as a JSON ABI item (the human-readable parser gives tuple components no names).
const ORDER_FILLED: &str = r#"{"type":"event","name":"OrderFilled","anonymous":false,"inputs":[
  {"name":"market","type":"string","indexed":true},{"name":"maker","type":"address","indexed":true},
  {"name":"fills","type":"tuple[]","indexed":false,"components":[
    {"name":"price","type":"uint128"},{"name":"amount","type":"uint64"},{"name":"taker","type":"address"},
    {"name":"buy","type":"bool"}]},
  {"name":"memo","type":"string","indexed":false},{"name":"payload","type":"bytes","indexed":false}]}"#;

const SWAP: &str = "event Swap(address indexed sender, address indexed recipient, int256 amount0, int256 amount1, \
                    uint160 sqrtPriceX96, uint128 liquidity, int24 tick)";
const POOL_CREATED: &str = "event PoolCreated(address indexed token0, address indexed token1, uint24 indexed fee, \
                            int24 tickSpacing, address pool)";

/// Deterministic pseudo-random numbers (splitmix64), so every run decodes the same blocks.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn address(&mut self) -> Address {
        let mut bytes = [0u8; 20];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_be_bytes()[..chunk.len()]);
        }
        Address::from(bytes)
    }

    fn u256(&mut self) -> U256 {
        U256::from_limbs([self.next(), self.next(), self.next(), self.next()])
    }
}

/// One case: blocks to decode with a decoder, the number of events each run must give, and for each watched log
/// (by block and log index) a fragment its `args` must contain.
struct Case {
    name: &'static str,
    decoder: EventDecoder,
    blocks: Vec<NormalizedBlock>,
    expected: Vec<Vec<(u32, String)>>,
}

impl Case {
    fn logs(&self) -> usize {
        self.blocks.iter().map(|block| block.logs.len()).sum()
    }

    fn events(&self) -> usize {
        self.expected.iter().map(Vec::len).sum()
    }
}

/// Builds `blocks` blocks of `per_block` logs; `next` gives each log's address and data, and the fragment its
/// decoded `args` must contain (`None` for a log nobody watches).
fn blocks(
    blocks: u64,
    per_block: u32,
    mut next: impl FnMut(u64, u32) -> (Address, LogData, Option<String>),
) -> (Vec<NormalizedBlock>, Vec<Vec<(u32, String)>>) {
    let mut out = Vec::with_capacity(blocks as usize);
    let mut expected = Vec::with_capacity(blocks as usize);
    for number in 1..=blocks {
        let mut logs = Vec::with_capacity(per_block as usize);
        let mut watched = Vec::new();
        for log_index in 0..per_block {
            let (address, data, fragment) = next(number, log_index);
            let tx_hash = keccak256([number.to_be_bytes(), u64::from(log_index / 4).to_be_bytes()].concat());
            logs.push(Log {
                tx_hash: Bytes::copy_from_slice(tx_hash.as_slice()),
                tx_index: log_index / 4,
                log_index,
                address: Bytes::copy_from_slice(address.as_slice()),
                topics: data.topics().to_vec(),
                data: data.data,
            });
            if let Some(fragment) = fragment {
                watched.push((log_index, fragment));
            }
        }
        let hash = keccak256(number.to_be_bytes());
        out.push(NormalizedBlock::logs_only(BlockPtr::new(number, hash), logs));
        expected.push(watched);
    }
    (out, expected)
}

fn address_source(name: &str, events: Vec<Event>, address: Address) -> ContractSource {
    ContractSource::new(name.into(), events, SourceTarget::Addresses(vec![address]), 0).expect("valid source")
}

fn hex(bytes: &[u8]) -> String {
    alloy::hex::encode_prefixed(bytes)
}

/// ERC-20 `Transfer` logs round-robin over `tokens`; the first is watched.
fn erc20(name: &'static str, tokens: &[Address], blocks_count: u64, per_block: u32, rng: &mut Rng) -> Case {
    let abi: JsonAbi = serde_json::from_str(ERC20_ABI).expect("ERC-20 ABI");
    let source = address_source("token", abi.events().cloned().collect(), tokens[0]).with_abi(&abi);
    let decoder = EventDecoder::new("bench", vec![Arc::new(source)]);
    let (blocks, expected) = blocks(blocks_count, per_block, |_, log_index| {
        let token = tokens[log_index as usize % tokens.len()];
        let transfer = abi::Transfer { from: rng.address(), to: rng.address(), value: rng.u256() };
        let fragment = (token == tokens[0]).then(|| {
            format!(
                r#"{{"from":"{}","to":"{}","value":"{}"}}"#,
                hex(&transfer.from[..]),
                hex(&transfer.to[..]),
                transfer.value
            )
        });
        (token, transfer.encode_log_data(), fragment)
    });
    Case { name, decoder, blocks, expected }
}

/// `OrderFilled` logs of one watched exchange: 1–4 fills, a short memo, a 64–191-byte payload.
fn complex(rng: &mut Rng) -> Case {
    let exchange = rng.address();
    let event: Event = serde_json::from_str(ORDER_FILLED).expect("OrderFilled ABI item");
    let decoder =
        EventDecoder::new("bench", vec![Arc::new(address_source("exchange", vec![event], exchange))]);
    let markets = ["ETH-USDC", "WBTC-ETH", "ARB-USDC", "LINK-ETH"];
    let (blocks, expected) = blocks(200, 100, |number, log_index| {
        let market = markets[rng.below(markets.len() as u64) as usize];
        let fills: Vec<abi::Fill> = (0..1 + rng.below(4))
            .map(|_| abi::Fill {
                price: u128::from(rng.next()) << 32 | u128::from(rng.next() >> 32),
                amount: rng.next(),
                taker: rng.address(),
                buy: rng.next() & 1 == 1,
            })
            .collect();
        let payload: Vec<u8> = (0..64 + rng.below(128)).map(|_| rng.next() as u8).collect();
        let order = abi::OrderFilled {
            market: keccak256(market),
            maker: rng.address(),
            fills,
            memo: format!("order {number}/{log_index} on {market}"),
            payload: payload.into(),
        };
        let fills = order
            .fills
            .iter()
            .map(|f| {
                format!(
                    r#"{{"price":"{}","amount":"{}","taker":"{}","buy":{}}}"#,
                    f.price,
                    f.amount,
                    hex(&f.taker[..]),
                    f.buy
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let fragment = format!(
            r#"{{"market":"{}","maker":"{}","fills":[{fills}],"memo":"{}","payload":"{}"}}"#,
            hex(&order.market[..]),
            hex(&order.maker[..]),
            order.memo,
            hex(&order.payload)
        );
        (exchange, order.encode_log_data(), Some(fragment))
    });
    Case { name: "complex", decoder, blocks, expected }
}

/// `Swap` logs spread over the 10,000 known children of a factory entry.
fn factory(rng: &mut Rng) -> Case {
    let target = SourceTarget::Factory {
        address: rng.address(),
        event: Event::parse(POOL_CREATED).expect("PoolCreated"),
        parameter: "pool".into(),
    };
    let source = ContractSource::new("pools".into(), vec![Event::parse(SWAP).expect("Swap")], target, 0)
        .expect("valid factory source");
    let mut decoder = EventDecoder::new("bench", vec![Arc::new(source)]);
    let children: Vec<Address> = (0..10_000).map(|_| rng.address()).collect();
    for child in &children {
        decoder.add_child("pools", *child, 0);
    }
    assert_eq!(decoder.children("pools"), children.len(), "every child known");
    let (blocks, expected) = blocks(200, 250, |_, _| {
        let pool = children[rng.below(children.len() as u64) as usize];
        let swap = abi::Swap {
            sender: rng.address(),
            recipient: rng.address(),
            amount0: I256::from_raw(rng.u256()),
            amount1: I256::from_raw(rng.u256()),
            sqrtPriceX96: U160::from(rng.next()) << 64 | U160::from(rng.next()),
            liquidity: u128::from(rng.next()),
            tick: I24::try_from(rng.below(1 << 20) as i64 - (1 << 19)).expect("fits an int24"),
        };
        let fragment = format!(
            concat!(
                r#"{{"sender":"{}","recipient":"{}","amount0":"{}","amount1":"{}","#,
                r#""sqrtPriceX96":"{}","liquidity":"{}","tick":"{}"}}"#
            ),
            hex(&swap.sender[..]),
            hex(&swap.recipient[..]),
            swap.amount0,
            swap.amount1,
            swap.sqrtPriceX96,
            swap.liquidity,
            swap.tick
        );
        (pool, swap.encode_log_data(), Some(fragment))
    });
    Case { name: "factory 10k children", decoder, blocks, expected }
}

fn main() {
    let mut seconds = 2.0_f64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(seconds);
        }
    }
    let budget = Duration::from_secs_f64(seconds);

    let mut rng = Rng(6);
    let tokens: Vec<Address> = (0..51).map(|_| rng.address()).collect();
    let cases = [
        erc20("erc20 1 of 51", &tokens, 500, 255, &mut rng),
        erc20("erc20 watched only", &tokens[..1], 500, 200, &mut rng),
        complex(&mut rng),
        factory(&mut rng),
    ];

    println!(
        "event decoding, one thread; best run of at least 3 in {seconds} s per case; \
         ratio = decode time / time to iterate the logs"
    );
    println!(
        "{:<22} {:>8} {:>8} {:>12} {:>14} {:>10} {:>8}",
        "case", "logs", "events", "events/s", "logs/s", "ns/event", "ratio"
    );
    for mut case in cases {
        let (logs, events) = (case.logs(), case.events());
        let decode = best(budget, || {
            for block in &mut case.blocks {
                block.events.clear();
            }
            let started = Instant::now();
            case.decoder.decode(black_box(&mut case.blocks));
            let elapsed = started.elapsed();
            let decoded: usize = case.blocks.iter().map(|block| block.events.len()).sum();
            assert_eq!(decoded, events, "{}: events decoded", case.name);
            elapsed
        });
        check(&case);
        let iterate = best(budget / 4, || {
            let started = Instant::now();
            for block in black_box(&case.blocks) {
                for log in &block.logs {
                    black_box(log);
                }
            }
            started.elapsed()
        });
        let secs = decode.as_secs_f64();
        println!(
            "{:<22} {logs:>8} {events:>8} {:>12.0} {:>14.0} {:>10.0} {:>7.0}x",
            case.name,
            events as f64 / secs,
            logs as f64 / secs,
            if events > 0 { secs * 1e9 / events as f64 } else { 0.0 },
            secs / iterate.as_secs_f64().max(1e-9),
        );
    }
}

/// Checks every decoded event of the last run: one per watched log, in log order, with the arguments encoded.
fn check(case: &Case) {
    for (block, expected) in case.blocks.iter().zip(&case.expected) {
        assert_eq!(block.events.len(), expected.len(), "{}: events of block {}", case.name, block.ptr.number);
        for (event, (log_index, args)) in block.events.iter().zip(expected) {
            assert_eq!(event.log_index, *log_index, "{}: block {}", case.name, block.ptr.number);
            assert_eq!(&event.args, args, "{}: block {} log {log_index}", case.name, block.ptr.number);
        }
    }
}

/// The shortest of at least three runs of `run` (which times itself), running until `budget` is spent.
fn best(budget: Duration, mut run: impl FnMut() -> Duration) -> Duration {
    let started = Instant::now();
    let mut best = Duration::MAX;
    let mut runs = 0;
    while runs < 3 || started.elapsed() < budget {
        best = best.min(run());
        runs += 1;
    }
    best
}
