// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title DemoToken
/// @notice Minimal ERC-20 for chainmux tests and demos. Anyone may mint.
/// @dev `spray` emits many Transfer events without touching storage, so a
///      single 30M-gas transaction can carry ~10,000 logs (benchmarks).
contract DemoToken {
    string public constant name = "Demo";
    string public constant symbol = "DEMO";
    uint8 public constant decimals = 18;

    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= amount, "DemoToken: insufficient allowance");
            unchecked {
                allowance[from][msg.sender] = allowed - amount;
            }
        }
        _transfer(from, to, amount);
        return true;
    }

    /// @notice Demo only: anyone can mint any amount to anyone.
    function mint(address to, uint256 amount) external {
        require(to != address(0), "DemoToken: mint to zero address");
        totalSupply += amount;
        unchecked {
            balanceOf[to] += amount;
        }
        emit Transfer(address(0), to, amount);
    }

    /// @notice Emits `count` Transfer(address(this), to_i, amount_i) events where
    ///         h_i = keccak256(abi.encode(seed, i)), to_i = address(uint160(h_i)) and
    ///         amount_i = (h_i >> 160) + 1. No storage is read or written.
    function spray(uint256 count, uint256 seed) external {
        bytes32 topic = Transfer.selector;
        assembly ("memory-safe") {
            for { let i := 0 } lt(i, count) { i := add(i, 1) } {
                mstore(0x00, seed)
                mstore(0x20, i)
                let h := keccak256(0x00, 0x40)
                mstore(0x00, add(shr(160, h), 1))
                log3(0x00, 0x20, topic, address(), and(h, 0xffffffffffffffffffffffffffffffffffffffff))
            }
        }
    }

    function _transfer(address from, address to, uint256 amount) internal {
        require(to != address(0), "DemoToken: transfer to zero address");
        uint256 balance = balanceOf[from];
        require(balance >= amount, "DemoToken: insufficient balance");
        unchecked {
            balanceOf[from] = balance - amount;
            balanceOf[to] += amount;
        }
        emit Transfer(from, to, amount);
    }
}
