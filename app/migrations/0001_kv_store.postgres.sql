-- Versioned records of every store namespace (sessions, token caches).
CREATE TABLE IF NOT EXISTS kv_store (
    ns TEXT NOT NULL,
    key TEXT NOT NULL,
    version BIGINT NOT NULL,
    data BYTEA NOT NULL,
    expires_at BIGINT,
    PRIMARY KEY (ns, key)
);
CREATE INDEX IF NOT EXISTS kv_store_expires_at ON kv_store (expires_at) WHERE expires_at IS NOT NULL;
