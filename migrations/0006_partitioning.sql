-- The chain-data tables become LIST (chain) partitioned, so a large chain can live in partitions of its own
-- (`chainmux db partition`), optionally sub-partitioned by block range, and be vacuumed, indexed, archived or
-- dropped without touching the other chains.
--
-- Cheap on a populated database: each old table is renamed to `<table>_default` and attached, rows and indexes as
-- they are, as the DEFAULT partition of a new partitioned table of the same name, columns, keys and indexes. No row
-- is copied and no index is built: `CREATE INDEX` on the parent adopts the default partition's matching index, and
-- a DEFAULT partition without siblings has no partition constraint to check. Every primary key starts with the
-- partition key (chain), as partitioned unique indexes require, and `block_number` (`number` for blocks) next, so a
-- chain's partition can be range-partitioned without changing a key. Index names stay those of 0001–0003 on the
-- parents; the default partitions' indexes are renamed `<table>_default_*`.

ALTER TABLE blocks RENAME TO blocks_default;
ALTER INDEX blocks_pkey RENAME TO blocks_default_pkey;
ALTER INDEX blocks_by_hash RENAME TO blocks_default_by_hash;
CREATE TABLE blocks (LIKE blocks_default INCLUDING DEFAULTS INCLUDING STORAGE) PARTITION BY LIST (chain);
ALTER TABLE blocks ADD PRIMARY KEY (chain, number);
ALTER TABLE blocks ATTACH PARTITION blocks_default DEFAULT;
CREATE INDEX blocks_by_hash ON blocks (chain, hash);

ALTER TABLE transactions RENAME TO transactions_default;
ALTER INDEX transactions_pkey RENAME TO transactions_default_pkey;
ALTER INDEX transactions_by_hash RENAME TO transactions_default_by_hash;
CREATE TABLE transactions (LIKE transactions_default INCLUDING DEFAULTS INCLUDING STORAGE)
    PARTITION BY LIST (chain);
ALTER TABLE transactions ADD PRIMARY KEY (chain, block_number, tx_index);
ALTER TABLE transactions ATTACH PARTITION transactions_default DEFAULT;
CREATE INDEX transactions_by_hash ON transactions (chain, hash);

ALTER TABLE logs RENAME TO logs_default;
ALTER INDEX logs_pkey RENAME TO logs_default_pkey;
ALTER INDEX logs_by_address RENAME TO logs_default_by_address;
ALTER INDEX logs_by_topic0 RENAME TO logs_default_by_topic0;
CREATE TABLE logs (LIKE logs_default INCLUDING DEFAULTS INCLUDING STORAGE) PARTITION BY LIST (chain);
ALTER TABLE logs ADD PRIMARY KEY (chain, block_number, log_index);
ALTER TABLE logs ATTACH PARTITION logs_default DEFAULT;
CREATE INDEX logs_by_address ON logs (chain, address, block_number, log_index);
CREATE INDEX logs_by_topic0 ON logs (chain, topic0, block_number, log_index);

ALTER TABLE transfers RENAME TO transfers_default;
ALTER INDEX transfers_pkey RENAME TO transfers_default_pkey;
ALTER INDEX transfers_by_from RENAME TO transfers_default_by_from;
ALTER INDEX transfers_by_to RENAME TO transfers_default_by_to;
ALTER INDEX transfers_by_token RENAME TO transfers_default_by_token;
ALTER INDEX transfers_by_from_owner RENAME TO transfers_default_by_from_owner;
ALTER INDEX transfers_by_to_owner RENAME TO transfers_default_by_to_owner;
CREATE TABLE transfers (LIKE transfers_default INCLUDING DEFAULTS INCLUDING STORAGE) PARTITION BY LIST (chain);
-- NOT VALID like 0002's: the default partition's constraint is NOT VALID (rows older than 0002 were checked only
-- by the narrower one), and a partition may not have a NOT VALID constraint where its parent has a valid one.
-- Partitions created later get it valid (they are empty when it is added).
ALTER TABLE transfers ADD CONSTRAINT transfers_standard_check
    CHECK (standard IN ('native', 'erc20', 'erc721', 'erc1155', 'sol', 'spl')) NOT VALID;
ALTER TABLE transfers ADD PRIMARY KEY (chain, block_number, log_index, batch_index, standard);
ALTER TABLE transfers ATTACH PARTITION transfers_default DEFAULT;
CREATE INDEX transfers_by_from ON transfers (chain, from_address, block_number, log_index, batch_index, standard);
CREATE INDEX transfers_by_to ON transfers (chain, to_address, block_number, log_index, batch_index, standard);
CREATE INDEX transfers_by_token ON transfers (chain, token, block_number, log_index, batch_index, standard);
CREATE INDEX transfers_by_from_owner ON transfers (chain, from_owner, block_number, log_index, batch_index, standard)
    WHERE from_owner IS NOT NULL;
CREATE INDEX transfers_by_to_owner ON transfers (chain, to_owner, block_number, log_index, batch_index, standard)
    WHERE to_owner IS NOT NULL;

ALTER TABLE instructions RENAME TO instructions_default;
ALTER INDEX instructions_pkey RENAME TO instructions_default_pkey;
ALTER INDEX instructions_by_program RENAME TO instructions_default_by_program;
ALTER INDEX instructions_by_tx_hash RENAME TO instructions_default_by_tx_hash;
CREATE TABLE instructions (LIKE instructions_default INCLUDING DEFAULTS INCLUDING STORAGE)
    PARTITION BY LIST (chain);
ALTER TABLE instructions ADD PRIMARY KEY (chain, block_number, tx_index, position);
ALTER TABLE instructions ATTACH PARTITION instructions_default DEFAULT;
CREATE INDEX instructions_by_program ON instructions (chain, program, block_number, tx_index, position);
CREATE INDEX instructions_by_tx_hash ON instructions (chain, tx_hash);

ALTER TABLE events RENAME TO events_default;
ALTER INDEX events_pkey RENAME TO events_default_pkey;
ALTER INDEX events_by_contract RENAME TO events_default_by_contract;
ALTER INDEX events_by_name RENAME TO events_default_by_name;
ALTER INDEX events_by_address RENAME TO events_default_by_address;
ALTER INDEX events_args RENAME TO events_default_args;
CREATE TABLE events (LIKE events_default INCLUDING DEFAULTS INCLUDING STORAGE) PARTITION BY LIST (chain);
ALTER TABLE events ADD PRIMARY KEY (chain, block_number, log_index, contract);
ALTER TABLE events ATTACH PARTITION events_default DEFAULT;
CREATE INDEX events_by_contract ON events (chain, contract, block_number, log_index);
CREATE INDEX events_by_name ON events (chain, name, block_number, log_index);
CREATE INDEX events_by_address ON events (chain, address, block_number, log_index);
CREATE INDEX events_args ON events USING gin (args jsonb_path_ops);

-- The chains given partitions of their own by `chainmux db partition`, and the block range of their
-- sub-partitions (NULL: one partition per table, not sub-partitioned), so a later run (from cron) keeps the same
-- ranges without being told them again.
CREATE TABLE chain_partitions (
    chain       text PRIMARY KEY,
    block_range bigint CHECK (block_range > 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
