-- The fleet's coherence record for a Redis cache tier in front of Postgres
-- (app/src/store/tiered/coherence.rs has the argument). Per namespace: the
-- generation that cache copies must carry to be trusted, the Redis server
-- process (run_id) they were made on, and the instances that could not keep
-- their copies up to date, each until a time judged by this server's clock.
CREATE TABLE IF NOT EXISTS tier_coherence (
    ns TEXT PRIMARY KEY,
    generation BIGINT NOT NULL,
    redis_run_id TEXT
);
CREATE TABLE IF NOT EXISTS tier_degraded (
    ns TEXT NOT NULL,
    instance TEXT NOT NULL,
    until TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (ns, instance)
);

-- One poll of an instance, one round trip: ends registrations whose holder
-- stopped renewing them (bumping the generation, since their stale copies
-- may still be in Redis), renews the caller's own if it holds one, and
-- returns the record.
CREATE OR REPLACE FUNCTION tier_poll(p_ns TEXT, p_instance TEXT, p_renew_ms BIGINT)
RETURNS TABLE (generation BIGINT, redis_run_id TEXT, degraded BIGINT, registered BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
    swept BIGINT;
BEGIN
    INSERT INTO tier_coherence AS c (ns, generation) VALUES (p_ns, 1) ON CONFLICT (ns) DO NOTHING;
    IF p_renew_ms IS NOT NULL THEN
        UPDATE tier_degraded AS d SET until = clock_timestamp() + p_renew_ms * INTERVAL '1 millisecond'
            WHERE d.ns = p_ns AND d.instance = p_instance AND d.until >= clock_timestamp();
    END IF;
    DELETE FROM tier_degraded AS d WHERE d.ns = p_ns AND d.until < clock_timestamp();
    GET DIAGNOSTICS swept = ROW_COUNT;
    IF swept > 0 THEN
        UPDATE tier_coherence AS c SET generation = c.generation + 1 WHERE c.ns = p_ns;
    END IF;
    RETURN QUERY SELECT c.generation, c.redis_run_id,
        (SELECT count(*) FROM tier_degraded AS d WHERE d.ns = p_ns),
        EXISTS (SELECT 1 FROM tier_degraded AS d WHERE d.ns = p_ns AND d.instance = p_instance)
        FROM tier_coherence AS c WHERE c.ns = p_ns;
END $$;

-- An instance that could not bring a Redis copy up to date registers itself
-- (or extends its registration); readers check Postgres while any is live.
CREATE OR REPLACE FUNCTION tier_degrade(p_ns TEXT, p_instance TEXT, p_ttl_ms BIGINT)
RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tier_coherence AS c (ns, generation) VALUES (p_ns, 1) ON CONFLICT (ns) DO NOTHING;
    INSERT INTO tier_degraded AS d (ns, instance, until)
        VALUES (p_ns, p_instance, clock_timestamp() + p_ttl_ms * INTERVAL '1 millisecond')
        ON CONFLICT (ns, instance) DO UPDATE SET until = excluded.until;
END $$;

-- The instance reaches Redis again: its registration ends and the generation
-- moves on, so copies made before (some stale) are never trusted again.
CREATE OR REPLACE FUNCTION tier_recover(p_ns TEXT, p_instance TEXT)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    g BIGINT;
BEGIN
    DELETE FROM tier_degraded AS d WHERE d.ns = p_ns AND d.instance = p_instance;
    UPDATE tier_coherence AS c SET generation = c.generation + 1 WHERE c.ns = p_ns
        RETURNING c.generation INTO g;
    RETURN g;
END $$;

-- Redis is now a server process the record does not name (restarted, maybe
-- from an old snapshot, or failed over): copies made on any other are never
-- trusted again. A no-op when another instance adopted it first.
CREATE OR REPLACE FUNCTION tier_adopt(p_ns TEXT, p_run_id TEXT)
RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tier_coherence AS c (ns, generation) VALUES (p_ns, 1) ON CONFLICT (ns) DO NOTHING;
    UPDATE tier_coherence AS c SET generation = c.generation + 1, redis_run_id = p_run_id
        WHERE c.ns = p_ns AND c.redis_run_id IS DISTINCT FROM p_run_id;
END $$;

-- Refresh leases: one holder at a time per token partition, until a time of
-- this server's clock, with a fencing token that only grows. A write fenced
-- with a token lands only while that token still holds the lease.
CREATE SEQUENCE IF NOT EXISTS refresh_lease_token;
CREATE TABLE IF NOT EXISTS refresh_lease (
    ns TEXT NOT NULL,
    key TEXT NOT NULL,
    token BIGINT NOT NULL,
    holder TEXT NOT NULL,
    until TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (ns, key)
);
