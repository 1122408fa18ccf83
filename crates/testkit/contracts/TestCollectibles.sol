// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title TestNft
/// @notice ERC-721-like collectible for chainmux tests: emits the standard
///         ERC-721 Transfer event (all three parameters indexed). Anyone may mint.
contract TestNft {
    string public constant name = "Test NFT";
    string public constant symbol = "TNFT";

    mapping(uint256 => address) public ownerOf;
    mapping(address => uint256) public balanceOf;

    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);

    function mint(address to, uint256 tokenId) external {
        require(to != address(0), "TestNft: mint to zero address");
        require(ownerOf[tokenId] == address(0), "TestNft: token exists");
        ownerOf[tokenId] = to;
        unchecked {
            balanceOf[to] += 1;
        }
        emit Transfer(address(0), to, tokenId);
    }

    function transfer(address to, uint256 tokenId) external {
        require(ownerOf[tokenId] == msg.sender, "TestNft: not owner");
        require(to != address(0), "TestNft: transfer to zero address");
        ownerOf[tokenId] = to;
        unchecked {
            balanceOf[msg.sender] -= 1;
            balanceOf[to] += 1;
        }
        emit Transfer(msg.sender, to, tokenId);
    }
}

/// @title TestMulti
/// @notice ERC-1155-like multi-token for chainmux tests: emits the standard
///         TransferSingle / TransferBatch events. Anyone may mint. No receiver hooks.
contract TestMulti {
    mapping(address => mapping(uint256 => uint256)) private _balances;
    mapping(address => mapping(address => bool)) public isApprovedForAll;

    event TransferSingle(
        address indexed operator, address indexed from, address indexed to, uint256 id, uint256 value
    );
    event TransferBatch(
        address indexed operator, address indexed from, address indexed to, uint256[] ids, uint256[] values
    );
    event ApprovalForAll(address indexed account, address indexed operator, bool approved);

    function balanceOf(address account, uint256 id) external view returns (uint256) {
        return _balances[account][id];
    }

    function setApprovalForAll(address operator, bool approved) external {
        isApprovedForAll[msg.sender][operator] = approved;
        emit ApprovalForAll(msg.sender, operator, approved);
    }

    function mint(address to, uint256 id, uint256 amount) external {
        require(to != address(0), "TestMulti: mint to zero address");
        _balances[to][id] += amount;
        emit TransferSingle(msg.sender, address(0), to, id, amount);
    }

    function mintBatch(address to, uint256[] calldata ids, uint256[] calldata amounts) external {
        require(to != address(0), "TestMulti: mint to zero address");
        require(ids.length == amounts.length, "TestMulti: length mismatch");
        for (uint256 i = 0; i < ids.length; ++i) {
            _balances[to][ids[i]] += amounts[i];
        }
        emit TransferBatch(msg.sender, address(0), to, ids, amounts);
    }

    function safeTransferFrom(address from, address to, uint256 id, uint256 amount, bytes calldata) external {
        _checkOperator(from, to);
        _move(from, to, id, amount);
        emit TransferSingle(msg.sender, from, to, id, amount);
    }

    function safeBatchTransferFrom(
        address from,
        address to,
        uint256[] calldata ids,
        uint256[] calldata amounts,
        bytes calldata
    ) external {
        _checkOperator(from, to);
        require(ids.length == amounts.length, "TestMulti: length mismatch");
        for (uint256 i = 0; i < ids.length; ++i) {
            _move(from, to, ids[i], amounts[i]);
        }
        emit TransferBatch(msg.sender, from, to, ids, amounts);
    }

    function _checkOperator(address from, address to) internal view {
        require(to != address(0), "TestMulti: transfer to zero address");
        require(from == msg.sender || isApprovedForAll[from][msg.sender], "TestMulti: not approved");
    }

    function _move(address from, address to, uint256 id, uint256 amount) internal {
        uint256 balance = _balances[from][id];
        require(balance >= amount, "TestMulti: insufficient balance");
        unchecked {
            _balances[from][id] = balance - amount;
        }
        _balances[to][id] += amount;
    }
}
