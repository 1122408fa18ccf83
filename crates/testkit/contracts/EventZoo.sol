// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title EventZoo
/// @notice Emits events with every kind of ABI parameter, for chainmux's ABI decoder tests: each `emitX`
///         function emits event `X` with exactly the arguments it is given, so a test can compare what was
///         decoded with what it sent.
contract EventZoo {
    struct Inner {
        uint64 id;
        address who;
    }

    struct Outer {
        string label;
        Inner[] inners;
        bytes32 tag;
    }

    event Unsigned(uint8 u8, uint16 u16, uint24 u24, uint32 u32, uint64 u64, uint128 u128, uint256 u256);
    event Signed(int8 i8, int16 i16, int24 i24, int32 i32, int64 i64, int128 i128, int256 i256);
    event Basics(
        address indexed who, uint256 indexed amount, bool flag, bytes data, bytes1 b1, bytes32 b32, string text
    );
    event Arrays(uint256[] values, address[3] trio, string[] names, bytes4[2] codes, int16[][] grid);
    event Nested(uint256 indexed id, Outer outer, Inner[2] pair);
    /// @notice Indexed reference types: the log holds their keccak256 hashes.
    event IndexedDynamic(string indexed text, bytes indexed data, Inner indexed inner);
    event IndexedArray(uint256[] indexed list, string note);
    event Anonymous(address indexed from, uint256 value, string note) anonymous;
    event Overloaded(uint256 value);
    event Overloaded(address who, string note);
    event Positional(uint256, address indexed, string);

    function emitUnsigned(uint8 a, uint16 b, uint24 c, uint32 d, uint64 e, uint128 f, uint256 g) external {
        emit Unsigned(a, b, c, d, e, f, g);
    }

    function emitSigned(int8 a, int16 b, int24 c, int32 d, int64 e, int128 f, int256 g) external {
        emit Signed(a, b, c, d, e, f, g);
    }

    function emitBasics(
        address who,
        uint256 amount,
        bool flag,
        bytes memory data,
        bytes1 b1,
        bytes32 b32,
        string memory text
    ) external {
        emit Basics(who, amount, flag, data, b1, b32, text);
    }

    function emitArrays(
        uint256[] memory values,
        address[3] memory trio,
        string[] memory names,
        bytes4[2] memory codes,
        int16[][] memory grid
    ) external {
        emit Arrays(values, trio, names, codes, grid);
    }

    function emitNested(uint256 id, Outer memory outer, Inner[2] memory pair) external {
        emit Nested(id, outer, pair);
    }

    function emitIndexedDynamic(string memory text, bytes memory data, Inner memory inner) external {
        emit IndexedDynamic(text, data, inner);
    }

    function emitIndexedArray(uint256[] memory list, string memory note) external {
        emit IndexedArray(list, note);
    }

    function emitAnonymous(uint256 value, string memory note) external {
        emit Anonymous(msg.sender, value, note);
    }

    /// @notice Emits both overloads, `Overloaded(value)` first.
    function emitOverloaded(uint256 value, address who, string memory note) external {
        emit Overloaded(value);
        emit Overloaded(who, note);
    }

    function emitPositional(uint256 a, address b, string memory c) external {
        emit Positional(a, b, c);
    }
}
