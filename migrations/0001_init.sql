-- chainmux schema, first version.
-- Conventions: every chain-data row carries chain, block_number and block_hash; addresses and hashes are bytea;
-- 256-bit integers are NUMERIC(78,0). Primary keys are natural keys, so replaying a batch inserts nothing twice,
-- and they start with (chain, block_number) so deleting everything above a height stays an index range scan.

CREATE TABLE chains (
    name             text PRIMARY KEY,
    kind             text NOT NULL,
    chain_id         bigint NOT NULL,
    -- Tips last reported by the chain's upstreams, written by the indexer so every gateway replica can judge finality.
    head_number      bigint,
    safe_number      bigint,
    finalized_number bigint,
    heads_updated_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- The last block whose rows are fully written. Moves only in the same transaction as those rows.
CREATE TABLE cursors (
    chain        text PRIMARY KEY REFERENCES chains (name),
    block_number bigint NOT NULL,
    block_hash   bytea NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE blocks (
    chain        text NOT NULL,
    number       bigint NOT NULL,
    hash         bytea NOT NULL,
    parent_hash  bytea NOT NULL,
    timestamp    bigint NOT NULL,
    tx_count     integer NOT NULL,
    log_count    integer NOT NULL,
    PRIMARY KEY (chain, number)
);
CREATE INDEX blocks_by_hash ON blocks (chain, hash);

CREATE TABLE transactions (
    chain            text NOT NULL,
    block_number     bigint NOT NULL,
    block_hash       bytea NOT NULL,
    tx_index         integer NOT NULL,
    hash             bytea NOT NULL,
    from_address     bytea NOT NULL,
    to_address       bytea,
    value            numeric(78, 0) NOT NULL,
    nonce            numeric(20, 0) NOT NULL,
    gas_limit        numeric(20, 0) NOT NULL,
    gas_price        numeric(39, 0),
    gas_used         numeric(20, 0),
    status           boolean,
    contract_address bytea,
    input            bytea NOT NULL,
    PRIMARY KEY (chain, block_number, tx_index)
);
CREATE INDEX transactions_by_hash ON transactions (chain, hash);

CREATE TABLE logs (
    chain        text NOT NULL,
    block_number bigint NOT NULL,
    block_hash   bytea NOT NULL,
    log_index    integer NOT NULL,
    tx_hash      bytea NOT NULL,
    tx_index     integer NOT NULL,
    address      bytea NOT NULL,
    topic0       bytea,
    topic1       bytea,
    topic2       bytea,
    topic3       bytea,
    data         bytea NOT NULL,
    PRIMARY KEY (chain, block_number, log_index)
);
CREATE INDEX logs_by_address ON logs (chain, address, block_number, log_index);
CREATE INDEX logs_by_topic0 ON logs (chain, topic0, block_number, log_index);

CREATE TABLE transfers (
    chain        text NOT NULL,
    block_number bigint NOT NULL,
    block_hash   bytea NOT NULL,
    log_index    integer NOT NULL,
    batch_index  integer NOT NULL,
    standard     text NOT NULL CHECK (standard IN ('native', 'erc20', 'erc721', 'erc1155')),
    tx_hash      bytea NOT NULL,
    token        bytea,
    from_address bytea NOT NULL,
    to_address   bytea NOT NULL,
    amount       numeric(78, 0) NOT NULL,
    token_id     numeric(78, 0),
    PRIMARY KEY (chain, block_number, log_index, batch_index, standard)
);
CREATE INDEX transfers_by_from ON transfers (chain, from_address, block_number, log_index, batch_index, standard);
CREATE INDEX transfers_by_to ON transfers (chain, to_address, block_number, log_index, batch_index, standard);
CREATE INDEX transfers_by_token ON transfers (chain, token, block_number, log_index, batch_index, standard);
