-- ABI-decoded contract events (`[[chains.contracts]]`).

-- One row per configured `[[chains.contracts]]` entry: what it decodes and how far its catch-up has come.
-- An entry added to a running deployment decodes new blocks from the indexer's next block (`live_from`) and
-- catches up on [start_block, live_from) on its own, so nothing already indexed for other entries is touched.
CREATE TABLE contract_sources (
    chain          text NOT NULL,
    name           text NOT NULL,
    -- Hash of everything that decides the entry's rows (selected events, addresses or factory, start block): a
    -- changed definition drops the entry's rows and indexes it again, and no other entry's.
    fingerprint    text NOT NULL,
    -- 'addresses' or 'factory'.
    kind           text NOT NULL CHECK (kind IN ('addresses', 'factory')),
    factory        bytea,
    factory_event  text,
    factory_parameter text,
    start_block    bigint NOT NULL,
    live_from      bigint NOT NULL,
    -- Highest block below live_from whose events are written; NULL before the first catch-up window.
    caught_up_to   bigint,
    -- The selected events: [{ "name", "signature", "anonymous", "params": [{ "name", "type", "indexed" }] }], so the
    -- query API can compare `arg.<param>` filters in their ABI types without the ABI files.
    events         jsonb NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, name)
);

-- Addresses whose events are decoded, per entry: configured ones (block columns NULL) and factory children,
-- which carry the block that created them, so a reorg that removes the block removes the child with it.
CREATE TABLE contracts (
    chain        text NOT NULL,
    name         text NOT NULL,
    address      bytea NOT NULL,
    factory      bytea,
    block_number bigint,
    block_hash   bytea,
    tx_hash      bytea,
    log_index    integer,
    PRIMARY KEY (chain, name, address)
);
CREATE INDEX contracts_by_block ON contracts (chain, block_number) WHERE block_number IS NOT NULL;

CREATE TABLE events (
    chain        text NOT NULL,
    block_number bigint NOT NULL,
    block_hash   bytea NOT NULL,
    log_index    integer NOT NULL,
    contract     text NOT NULL,
    tx_hash      bytea NOT NULL,
    tx_index     integer NOT NULL,
    address      bytea NOT NULL,
    name         text NOT NULL,
    signature    text NOT NULL,
    args         jsonb NOT NULL,
    PRIMARY KEY (chain, block_number, log_index, contract)
);
CREATE INDEX events_by_contract ON events (chain, contract, block_number, log_index);
CREATE INDEX events_by_name ON events (chain, name, block_number, log_index);
CREATE INDEX events_by_address ON events (chain, address, block_number, log_index);
-- `args @> '{"to": "0x…"}'`: argument filters of the query API.
CREATE INDEX events_args ON events USING gin (args jsonb_path_ops);
