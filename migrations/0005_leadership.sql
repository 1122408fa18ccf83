-- Which replica writes each chain. Replicas compete for a PostgreSQL advisory lock per chain (keyed by lock_id);
-- the winner bumps epoch, and every batch and rollback checks, in its own transaction, that the epoch is still its
-- own. A leader whose lock session died is thereby fenced out the moment another replica takes over, even if it
-- has not noticed yet.
CREATE TABLE chain_leaders (
    chain       text PRIMARY KEY,
    -- The advisory lock's key (with a constant class in the high 32 bits): unique per chain, unlike a hash of the name.
    lock_id     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    epoch       bigint NOT NULL DEFAULT 0,
    holder      text,
    acquired_at timestamptz,
    -- Last time the holder proved its lock session alive; readers judge a stale leader by it.
    renewed_at  timestamptz
);

-- One row per leadership term: who wrote which blocks, so a takeover can be audited (no block written by two terms).
CREATE TABLE leader_terms (
    chain       text NOT NULL,
    epoch       bigint NOT NULL,
    holder      text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    first_block bigint,
    last_block  bigint,
    batches     bigint NOT NULL DEFAULT 0,
    reverts     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (chain, epoch)
);
