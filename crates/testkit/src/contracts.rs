//! The Solidity test contracts in `contracts/` (creation bytecode from the committed
//! `contracts/build/` artefacts; rebuild with `scripts/build-contracts.sh`) and call-data builders.

use alloy::primitives::{Address, B256, Bytes, U256, b256};
use alloy::sol_types::SolCall;

/// `DemoToken` (ERC-20, anyone can mint, `spray` for cheap bulk Transfer logs): creation bytecode, hex without `0x`.
pub const DEMO_TOKEN: &str = include_str!("../contracts/build/DemoToken.bin").trim_ascii();
/// `TestNft` (ERC-721-like, anyone can mint): creation bytecode, hex without `0x`.
pub const TEST_NFT: &str = include_str!("../contracts/build/TestNft.bin").trim_ascii();
/// `TestMulti` (ERC-1155-like, anyone can mint): creation bytecode, hex without `0x`.
pub const TEST_MULTI: &str = include_str!("../contracts/build/TestMulti.bin").trim_ascii();
/// `ChildFactory` (deploys `Child` contracts, announcing each with `ChildCreated`): creation bytecode, hex without
/// `0x`.
pub const CHILD_FACTORY: &str = include_str!("../contracts/build/ChildFactory.bin").trim_ascii();
/// `Child` (what `ChildFactory` deploys; emits `Ping`): creation bytecode, hex without `0x`. Its constructor takes
/// `(uint256 id, bool pingNow)`.
pub const CHILD: &str = include_str!("../contracts/build/Child.bin").trim_ascii();
/// `EventZoo` (emits events with every kind of ABI parameter, one `emitX` function per event `X`; see
/// `contracts/EventZoo.sol`): creation bytecode, hex without `0x`.
pub const EVENT_ZOO: &str = include_str!("../contracts/build/EventZoo.bin").trim_ascii();

/// ABI JSON of `DemoToken`.
pub const DEMO_TOKEN_ABI: &str = include_str!("../contracts/build/DemoToken.abi");
/// ABI JSON of `TestNft`.
pub const TEST_NFT_ABI: &str = include_str!("../contracts/build/TestNft.abi");
/// ABI JSON of `TestMulti`.
pub const TEST_MULTI_ABI: &str = include_str!("../contracts/build/TestMulti.abi");
/// ABI JSON of `ChildFactory`.
pub const CHILD_FACTORY_ABI: &str = include_str!("../contracts/build/ChildFactory.abi");
/// ABI JSON of `Child`.
pub const CHILD_ABI: &str = include_str!("../contracts/build/Child.abi");
/// ABI JSON of `EventZoo`.
pub const EVENT_ZOO_ABI: &str = include_str!("../contracts/build/EventZoo.abi");

/// `keccak256("Transfer(address,address,uint256)")`: ERC-20 (3 topics) and ERC-721 (4 topics).
pub const TRANSFER_TOPIC: B256 = b256!("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");
/// `keccak256("TransferSingle(address,address,address,uint256,uint256)")` (ERC-1155).
pub const TRANSFER_SINGLE_TOPIC: B256 =
    b256!("c3d58168c5ae7397731d063d5bbf3d657854427343f4c083240f7aacaa2d0f62");
/// `keccak256("TransferBatch(address,address,address,uint256[],uint256[])")` (ERC-1155).
pub const TRANSFER_BATCH_TOPIC: B256 =
    b256!("4a39dc06d4c0dbc64b70af90fd698a233a518aa5d07e595d983b8c0526c8f7fb");
/// `keccak256("ChildCreated(address,uint256)")` (`ChildFactory`; both parameters indexed).
pub const CHILD_CREATED_TOPIC: B256 =
    b256!("f1b544c1944129b0fa24838a22f6c7d8500381559fa6d6ccf8845923f0922a2c");
/// `keccak256("Ping(address,uint256,uint256)")` (`Child`; `sender` and `id` indexed, `value` in the data).
pub const PING_TOPIC: B256 = b256!("112d2e583fa63f0db88f80b06e471fea138fb541483952119ece7a75e1bb426c");

mod abi {
    alloy::sol! {
        interface IDemoToken {
            function mint(address to, uint256 amount) external;
            function transfer(address to, uint256 amount) external returns (bool);
            function spray(uint256 count, uint256 seed) external;
        }

        interface ITestNft {
            function mint(address to, uint256 tokenId) external;
            function transfer(address to, uint256 tokenId) external;
        }

        interface IChildFactory {
            function create(uint256 count, bool pingInConstructor, bool pingAfter) external;
            function pingRange(uint256 from, uint256 to, uint256 value) external;
        }

        interface IChild {
            function ping(uint256 value) external;
        }

        interface ITestMulti {
            function mint(address to, uint256 id, uint256 amount) external;
            function mintBatch(address to, uint256[] ids, uint256[] amounts) external;
            function safeTransferFrom(address from, address to, uint256 id, uint256 amount, bytes data) external;
        }
    }
}

use abi::{IChild, IChildFactory, IDemoToken, ITestMulti, ITestNft};

fn encode(call: impl SolCall) -> Bytes {
    Bytes::from(call.abi_encode())
}

/// `DemoToken.mint(to, amount)`.
pub fn erc20_mint(to: Address, amount: U256) -> Bytes {
    encode(IDemoToken::mintCall { to, amount })
}

/// `DemoToken.transfer(to, amount)`.
pub fn erc20_transfer(to: Address, amount: U256) -> Bytes {
    encode(IDemoToken::transferCall { to, amount })
}

/// `DemoToken.spray(count, seed)`: `count` Transfer logs from the token's own address, no storage writes
/// (~1,900 gas per log: 10,000 logs fit in one 30M-gas transaction).
pub fn erc20_spray(count: U256, seed: U256) -> Bytes {
    encode(IDemoToken::sprayCall { count, seed })
}

/// `TestNft.mint(to, tokenId)`.
pub fn nft_mint(to: Address, token_id: U256) -> Bytes {
    encode(ITestNft::mintCall { to, tokenId: token_id })
}

/// `TestNft.transfer(to, tokenId)`: reverts unless the sender owns the token.
pub fn nft_transfer(to: Address, token_id: U256) -> Bytes {
    encode(ITestNft::transferCall { to, tokenId: token_id })
}

/// `TestMulti.mint(to, id, amount)`.
pub fn multi_mint(to: Address, id: U256, amount: U256) -> Bytes {
    encode(ITestMulti::mintCall { to, id, amount })
}

/// `TestMulti.mintBatch(to, ids, amounts)`.
pub fn multi_mint_batch(to: Address, ids: Vec<U256>, amounts: Vec<U256>) -> Bytes {
    encode(ITestMulti::mintBatchCall { to, ids, amounts })
}

/// `TestMulti.safeTransferFrom(from, to, id, amount, "")`.
pub fn multi_transfer(from: Address, to: Address, id: U256, amount: U256) -> Bytes {
    encode(ITestMulti::safeTransferFromCall { from, to, id, amount, data: Bytes::new() })
}

/// `ChildFactory.create(count, pingInConstructor, pingAfter)`: deploys `count` children, the ids continuing from
/// the children created before.
pub fn factory_create(count: U256, ping_in_constructor: bool, ping_after: bool) -> Bytes {
    encode(IChildFactory::createCall { count, pingInConstructor: ping_in_constructor, pingAfter: ping_after })
}

/// `ChildFactory.pingRange(from, to, value)`: children `from..to` each emit `Ping(factory, id, value)`.
pub fn factory_ping_range(from: U256, to: U256, value: U256) -> Bytes {
    encode(IChildFactory::pingRangeCall { from, to, value })
}

/// `Child.ping(value)`: the child emits `Ping(caller, id, value)`.
pub fn child_ping(value: U256) -> Bytes {
    encode(IChild::pingCall { value })
}

/// Creation code of `Child` with its constructor arguments `(id, ping_now)` appended, for deploying a child
/// directly (without a factory).
pub fn child_creation_code(id: U256, ping_now: bool) -> Bytes {
    // The artefact is solc's hex output, embedded at build time.
    let mut code =
        alloy::hex::decode(CHILD).unwrap_or_else(|err| panic!("contracts/build/Child.bin is not hex: {err}"));
    code.extend_from_slice(&id.to_be_bytes::<32>());
    code.extend_from_slice(&U256::from(u8::from(ping_now)).to_be_bytes::<32>());
    Bytes::from(code)
}

/// The address of child `index` (0-based, across all `create` calls) of the `ChildFactory` at `factory`: the
/// factory's `CREATE` with nonce `index + 1` (a contract's nonce starts at 1).
pub fn factory_child_address(factory: Address, index: u64) -> Address {
    factory.create(index + 1)
}
