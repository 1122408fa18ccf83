-- The indexer's current error per chain, so every gateway replica (not only the one indexing the chain) can show it.
-- Written on transitions only: set by the first failure after success (or a fatal stop), cleared by the first
-- success after it. NULL: the indexer's last step succeeded (or it never failed).
ALTER TABLE chains
    ADD COLUMN indexer_error    text,
    ADD COLUMN indexer_error_at timestamptz;
