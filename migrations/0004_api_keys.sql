-- API keys of the gateway (`chainmux keys create|list|revoke`).
--
-- The key itself is never stored: only its SHA-256, which is what a request's key is looked up by, and a short
-- prefix of it (`cmx_` and 8 hex digits, 32 of the key's 256 random bits) that names the key in listings and
-- `keys revoke` without being usable as the key.
CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prefix      text NOT NULL UNIQUE,
    key_hash    bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    name        text,
    -- Limits of this key; NULL = the `[gateway] default_key_*` value of the running config, so keys created
    -- without limits follow the config.
    rps         integer CHECK (rps > 0),
    burst       integer CHECK (burst > 0),
    rpc_rps     integer CHECK (rpc_rps > 0),
    rpc_burst   integer CHECK (rpc_burst > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- A name picks out one usable key; a revoked key's name can be given to its replacement.
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL AND name IS NOT NULL;
