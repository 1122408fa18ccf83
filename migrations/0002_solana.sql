-- Solana in the same tables as EVM: block parents by number (Solana skips slots, so the parent is not always
-- number - 1) and block height, transaction fee and error, transfer owners and decimals (SPL moves tokens between
-- token accounts; the wallets owning them are what users search by), and the instructions of configured programs.
-- Every new column is nullable without a default, so adding it is a catalog change, not a table rewrite.

-- The parent's slot on Solana; parent.number (number - 1) on EVM. NULL for a chain's first block, and for EVM rows
-- written before this migration (no reader of EVM blocks needs it).
ALTER TABLE blocks
    ADD COLUMN parent_number bigint,
    -- Solana's block height (blocks below this one, skipped slots not counted); NULL on EVM.
    ADD COLUMN height        bigint;

ALTER TABLE transactions
    -- Fee in the native currency's smallest unit (lamports), where the chain reports it as one number.
    ADD COLUMN fee   numeric(39, 0),
    -- Why the transaction failed, as the chain reports it (Solana's `err` as JSON text); NULL when it succeeded.
    ADD COLUMN error text;

-- A wider check: every stored row passed the narrower one, so NOT VALID only skips a pointless full scan of the
-- largest table under an exclusive lock. New rows are checked as before.
ALTER TABLE transfers DROP CONSTRAINT transfers_standard_check;
ALTER TABLE transfers ADD CONSTRAINT transfers_standard_check
    CHECK (standard IN ('native', 'erc20', 'erc721', 'erc1155', 'sol', 'spl')) NOT VALID;

ALTER TABLE transfers
    -- Wallets owning the SPL token accounts in from_address / to_address; NULL where the address is the wallet.
    ADD COLUMN from_owner bytea,
    ADD COLUMN to_owner   bytea,
    -- The token's decimals where the chain reports them with the transfer (SPL).
    ADD COLUMN decimals   smallint;

-- Partial: owners are NULL on every EVM row, which these indexes need not hold.
CREATE INDEX transfers_by_from_owner ON transfers (chain, from_owner, block_number, log_index, batch_index, standard)
    WHERE from_owner IS NOT NULL;
CREATE INDEX transfers_by_to_owner ON transfers (chain, to_owner, block_number, log_index, batch_index, standard)
    WHERE to_owner IS NOT NULL;

-- Executed instructions (top-level and inner) of the programs a Solana chain's config lists.
CREATE TABLE instructions (
    chain        text NOT NULL,
    block_number bigint NOT NULL,
    block_hash   bytea NOT NULL,
    tx_index     integer NOT NULL,
    -- Execution order within the transaction, top-level and inner instructions counted together.
    position     integer NOT NULL,
    tx_hash      bytea NOT NULL,
    -- The top-level instruction this one is, or runs under.
    outer_index  integer NOT NULL,
    -- Position among the inner instructions of outer_index; NULL for a top-level instruction.
    inner_index  integer,
    stack_height integer NOT NULL,
    program      bytea NOT NULL,
    accounts     bytea[] NOT NULL,
    data         bytea NOT NULL,
    -- Log messages emitted while this instruction itself ran.
    logs         text[] NOT NULL,
    PRIMARY KEY (chain, block_number, tx_index, position)
);
CREATE INDEX instructions_by_program ON instructions (chain, program, block_number, tx_index, position);
-- For the API's tx_hash filter, which would otherwise scan every instruction of the chain.
CREATE INDEX instructions_by_tx_hash ON instructions (chain, tx_hash);
