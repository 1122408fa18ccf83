// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Child
/// @notice A factory-created contract for chainmux's factory tests: it emits `Ping`, from its constructor when
///         asked to (so a child can log in the same block, and before, its factory's `ChildCreated`) and on every
///         `ping` call.
contract Child {
    /// @notice `sender` is whoever made the child ping (the factory for constructor pings and its own calls).
    event Ping(address indexed sender, uint256 indexed id, uint256 value);

    uint256 public immutable id;

    /// @notice Emits `Ping(msg.sender, id_, 0)` when `pingNow`.
    constructor(uint256 id_, bool pingNow) {
        id = id_;
        if (pingNow) {
            emit Ping(msg.sender, id_, 0);
        }
    }

    /// @notice Emits `Ping(msg.sender, id, value)`.
    function ping(uint256 value) external {
        emit Ping(msg.sender, id, value);
    }
}

/// @title ChildFactory
/// @notice Deploys `Child` contracts and announces each with `ChildCreated`. Child ids are the creation order
///         (0, 1, ...) across all calls, and child `i` is deployed with the factory's nonce `i + 1`.
contract ChildFactory {
    event ChildCreated(address indexed child, uint256 indexed id);

    Child[] public children;

    /// @notice Deploys `count` children. For each one, in this order: the child's constructor emits
    ///         `Ping(factory, id, 0)` when `pingInConstructor`, then the factory emits `ChildCreated(child, id)`,
    ///         then calls `child.ping(1)` when `pingAfter`.
    function create(uint256 count, bool pingInConstructor, bool pingAfter) external {
        for (uint256 i = 0; i < count; i++) {
            uint256 id = children.length;
            Child child = new Child(id, pingInConstructor);
            children.push(child);
            emit ChildCreated(address(child), id);
            if (pingAfter) {
                child.ping(1);
            }
        }
    }

    /// @notice Calls `ping(value)` on children `from` to `to - 1`, in order.
    function pingRange(uint256 from, uint256 to, uint256 value) external {
        for (uint256 i = from; i < to; i++) {
            children[i].ping(value);
        }
    }

    /// @notice How many children were created.
    function childCount() external view returns (uint256) {
        return children.length;
    }
}
