// Redis and Postgres: connections that fail fast instead of queueing, the
// tables this target uses, and the two token-cache stores behind the MSAL
// cache plugins (option2's one app-wide blob, option4's partitions), and
// option4's sessions (connect-redis with Postgres behind it).
//
// Keys and rows carry NAMESPACE so runs on shared servers stay apart:
// Redis keys are `{ns}:sess:{sid}` and `{ns}:tc:{hash}`, Postgres rows of
// express_msal_kv carry `ns` (keys `tc:{hash}`, `sess:{hash}`, `tc:app`), and option2/3's session table is
// `express_msal_sessions_{ns}`.

"use strict";

const crypto = require("node:crypto");
const session = require("express-session");
const { createClient } = require("redis");
const { Pool } = require("pg");
const { StoreError } = require("./contract");

const KV_TABLE = "express_msal_kv";

/**
 * A Redis client that answers at once while Redis is down (no offline
 * queue: a command fails instead of waiting for the reconnect) and gives up
 * on a command after STORE_TIMEOUT_MS, so an outage is a 503, not a hang.
 */
function connectRedis(settings, log) {
  const client = createClient({
    url: settings.redisUrl,
    disableOfflineQueue: true,
    commandOptions: { timeout: settings.storeTimeoutMs },
    socket: {
      connectTimeout: settings.storeTimeoutMs,
      reconnectStrategy: (retries) => Math.min(100 * 2 ** Math.min(retries, 5), 2000),
    },
  });
  let down = false;
  client.on("error", (e) => {
    if (!down) log.warn(`redis: ${e.message}`);
    down = true;
  });
  client.on("ready", () => {
    if (down) log.info("redis: back");
    down = false;
  });
  // Not awaited: the instance starts (and answers 503 store_unavailable)
  // while Redis is away; the client keeps reconnecting.
  client.connect().catch((e) => log.warn(`redis: first connect failed: ${e.message}`));
  return client;
}

/** A Postgres pool whose connects and queries time out after STORE_TIMEOUT_MS. */
function connectPostgres(settings, log) {
  const pool = new Pool({
    connectionString: settings.databaseUrl,
    max: 5,
    connectionTimeoutMillis: settings.storeTimeoutMs,
    query_timeout: settings.storeTimeoutMs,
    idleTimeoutMillis: 30000,
    application_name: `express-msal-${settings.instanceId}`,
  });
  pool.on("error", (e) => log.warn(`postgres: idle client: ${e.message}`));
  return pool;
}

/** The session table of options 2 and 3, one per namespace (connect-pg-simple's layout). */
function sessionTable(namespace) {
  let name = `express_msal_sessions_${namespace.toLowerCase().replace(/[^a-z0-9_]/g, "_")}`;
  if (name.length > 63) {
    name = `express_msal_sessions_${crypto.createHash("sha256").update(namespace).digest("hex").slice(0, 32)}`;
  }
  return name;
}

/**
 * Creates what this target needs, if missing. N instances start at once, and
 * concurrent CREATE TABLE IF NOT EXISTS can still collide in Postgres's
 * catalog, so creation runs under a transaction-scoped advisory lock.
 */
async function ensureTables(pool, { sessions }) {
  const statements = [
    `CREATE TABLE IF NOT EXISTS ${KV_TABLE} (
       ns text NOT NULL, key text NOT NULL, data text NOT NULL,
       expires_at timestamptz, updated_at timestamptz NOT NULL DEFAULT now(),
       PRIMARY KEY (ns, key))`,
  ];
  if (sessions) {
    // connect-pg-simple's table.sql, under this namespace's name.
    statements.push(
      `CREATE TABLE IF NOT EXISTS "${sessions}" (
         sid varchar NOT NULL PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL)`,
      `CREATE INDEX IF NOT EXISTS "${sessions}_expire" ON "${sessions}" (expire)`,
    );
  }
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock(hashtext('express_msal_tables'))");
    for (const sql of statements) await client.query(sql);
    await client.query("COMMIT");
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    throw e;
  } finally {
    client.release();
  }
}

/**
 * Makes an express-session store's failures StoreErrors (503
 * store_unavailable) rather than anonymous 500s. express-session hands a
 * failed load to the error handler; a failed save at the end of a request
 * would only be logged after the reply went out, which is why handlers that
 * write save explicitly before answering.
 */
function guardSessionStore(store, kind) {
  for (const method of ["get", "set", "destroy", "touch"]) {
    const original = store[method].bind(store);
    store[method] = (...args) => {
      const callback = typeof args[args.length - 1] === "function" ? args.pop() : () => {};
      try {
        const result = original(...args, (err, value) => callback(err ? new StoreError(kind, err) : null, value));
        // connect-redis returns a promise as well as calling back; its
        // rejection is already reported through the callback.
        if (result && typeof result.catch === "function") result.catch(() => {});
      } catch (err) {
        callback(new StoreError(kind, err));
      }
    };
  }
  return store;
}

/**
 * Option2's persistence: one Postgres row holding MSAL's serialized cache for
 * the whole app (key `tc:app`). Every instance reads it before each cache
 * access and writes it after each change, the last writer winning.
 */
class BlobStore {
  constructor(pool, namespace) {
    this.pool = pool;
    this.namespace = namespace;
    this.key = "tc:app";
  }

  async load() {
    try {
      const { rows } = await this.pool.query(`SELECT data FROM ${KV_TABLE} WHERE ns = $1 AND key = $2`, [
        this.namespace,
        this.key,
      ]);
      return rows.length ? rows[0].data : "";
    } catch (e) {
      throw new StoreError("postgres", e);
    }
  }

  async save(blob) {
    try {
      await this.pool.query(
        `INSERT INTO ${KV_TABLE} (ns, key, data) VALUES ($1, $2, $3)
         ON CONFLICT (ns, key) DO UPDATE SET data = EXCLUDED.data, updated_at = now()`,
        [this.namespace, this.key, blob],
      );
    } catch (e) {
      throw new StoreError("postgres", e);
    }
  }
}

/**
 * Sealed records in this namespace's express_msal_kv rows, each with an
 * expiry: what option4 keeps in Postgres behind Redis (token partitions
 * under `tc:`, sessions under `sess:`). Errors are StoreErrors("postgres").
 */
class SealedRows {
  constructor({ pool, sealer, namespace, log }) {
    Object.assign(this, { pool, sealer, namespace, log });
  }

  /** The sealed record under `key`, or null when absent or expired. */
  async read(key) {
    try {
      const { rows } = await this.pool.query(
        `SELECT data FROM ${KV_TABLE} WHERE ns = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > now())`,
        [this.namespace, key],
      );
      return rows.length ? rows[0].data : null;
    } catch (e) {
      throw new StoreError("postgres", e);
    }
  }

  async write(key, sealed, ttlSecs) {
    try {
      await this.pool.query(
        `INSERT INTO ${KV_TABLE} (ns, key, data, expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4))
         ON CONFLICT (ns, key) DO UPDATE SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at, updated_at = now()`,
        [this.namespace, key, sealed, ttlSecs],
      );
    } catch (e) {
      throw new StoreError("postgres", e);
    }
  }

  /** Pushes an existing record's expiry out (a session used again). */
  async renew(key, ttlSecs) {
    try {
      await this.pool.query(
        `UPDATE ${KV_TABLE} SET expires_at = now() + make_interval(secs => $3) WHERE ns = $1 AND key = $2`,
        [this.namespace, key, ttlSecs],
      );
    } catch (e) {
      throw new StoreError("postgres", e);
    }
  }

  async remove(key) {
    try {
      await this.pool.query(`DELETE FROM ${KV_TABLE} WHERE ns = $1 AND key = $2`, [this.namespace, key]);
    } catch (e) {
      throw new StoreError("postgres", e);
    }
  }

  /** Removes this namespace's expired rows (Redis expires its own keys). */
  async sweep() {
    await this.pool.query(`DELETE FROM ${KV_TABLE} WHERE ns = $1 AND expires_at < now()`, [this.namespace]);
  }

  /**
   * Opens a sealed record; an undecryptable one (wrong secret, tampered,
   * moved to another key) reads as missing, so the user signs in again.
   */
  open(sealed, key) {
    try {
      return this.sealer.open(sealed, key);
    } catch (e) {
      this.log.warn(`${key}: ${e.message}`);
      return null;
    }
  }
}

/**
 * Option4's ICacheClient (MSAL's get/set interface) over Redis with Postgres
 * behind it, every record sealed with AES-256-GCM (crypto.js):
 * - set: Postgres and Redis, both with the session's TTL; the write counts
 *   when either store took it (so an outage of one store does not lose the
 *   refresh token the IdP just rotated), and the other keeps an older copy
 *   until the next write.
 * - get: Redis; on a miss, or while Redis fails, Postgres, and a Postgres
 *   hit is copied back into Redis (read-through after a flush or restart).
 * There is no compare-and-set: MSAL's DistributedCachePlugin reads in
 * beforeCacheAccess and writes a whole partition in afterCacheAccess, so two
 * concurrent writers of one partition lose one write (the last one wins).
 */
class PartitionStore {
  constructor({ redis, rows, namespace, ttlSecs, log }) {
    Object.assign(this, { redis, rows, namespace, ttlSecs, log });
  }

  redisKey(key) {
    return `${this.namespace}:${key}`;
  }

  async get(key) {
    let sealed = null;
    let redisUp = true;
    try {
      // GETEX renews the partition's TTL on use, as the session's is renewed on use.
      sealed = await this.redis.getEx(this.redisKey(key), { type: "EX", value: this.ttlSecs });
    } catch (e) {
      redisUp = false;
      this.log.debug(`partition read falls back to postgres: ${e.message}`);
    }
    if (sealed === null) {
      try {
        sealed = await this.rows.read(key);
      } catch (e) {
        throw redisUp ? e : new StoreError("redis+postgres", e.cause || e);
      }
      if (sealed === null) return "";
      if (redisUp) {
        await this.redis
          .set(this.redisKey(key), sealed, { expiration: { type: "EX", value: this.ttlSecs } })
          .catch((e) => this.log.debug(`partition read-through copy failed: ${e.message}`));
      }
    }
    return this.rows.open(sealed, key) ?? "";
  }

  async set(key, value) {
    const sealed = this.rows.sealer.seal(value, key);
    const [pg, redis] = await Promise.allSettled([
      this.rows.write(key, sealed, this.ttlSecs),
      this.redis.set(this.redisKey(key), sealed, { expiration: { type: "EX", value: this.ttlSecs } }),
    ]);
    // By the time MSAL writes, the IdP has already rotated the refresh token:
    // one store that took the write keeps the new one, so that counts as
    // written; the other store holds an older copy until the next write.
    if (pg.status === "rejected" && redis.status === "rejected") {
      throw new StoreError("redis+postgres", pg.reason.cause || pg.reason);
    }
    if (pg.status === "rejected") this.log.debug(`partition write reached redis only: ${pg.reason.message}`);
    if (redis.status === "rejected") this.log.debug(`partition write reached postgres only: ${redis.reason.message}`);
    return value;
  }

  /**
   * The partition lives `ttlSecs` more in both stores, as its session does
   * each time the session is used: a session kept alive by requests that
   * never read tokens (cart reads) must not outlive its tokens. Best effort:
   * a store that fails here still holds the partition until its old expiry.
   */
  async renew(key, ttlSecs) {
    const [redis, pg] = await Promise.allSettled([
      this.redis.expire(this.redisKey(key), ttlSecs),
      this.rows.renew(key, ttlSecs),
    ]);
    if (redis.status === "rejected") this.log.debug(`partition renew missed redis: ${redis.reason.message}`);
    if (pg.status === "rejected") this.log.debug(`partition renew missed postgres: ${pg.reason.message}`);
  }

  /** Logout: the partition goes from both stores. */
  async delete(key) {
    const results = await Promise.allSettled([this.redis.del(this.redisKey(key)), this.rows.remove(key)]);
    if (results[0].status === "rejected") throw new StoreError("redis", results[0].reason);
    if (results[1].status === "rejected") throw results[1].reason;
  }
}

/**
 * Option4's sessions, as the seed's option 4 says: "persisted in a
 * distributed memory cache (Redis) and supported by a database".
 * connect-redis is the Redis side, unchanged; behind it each session is
 * sealed in a Postgres row keyed by a keyed hash of its id.
 * - set: Postgres first, and it decides (a failed Postgres write is a 503,
 *   as in the reference app); then connect-redis, best effort.
 * - get: connect-redis; on a miss, or while Redis fails, Postgres, and a
 *   Postgres hit is copied back into Redis (a Redis restart or flush signs
 *   no one out).
 * - destroy: both stores must drop it, so a logout never leaves a copy that
 *   could come back.
 * No versions: a Redis write that failed while Postgres took it (Redis
 * paused, not restarted) leaves Redis an older copy that is read when Redis
 * answers again, until the session is written again (README, difference 6).
 */
class TieredSessionStore extends session.Store {
  /**
   * `front`: a connect-redis store (guarded); `rows`: SealedRows;
   * `alsoRenew(sid, ttlSecs)`: what else lives as long as the session (its
   * token partition), renewed on every write and touch before the answer.
   */
  constructor({ front, rows, ttlSecs, log, alsoRenew = async () => {} }) {
    super();
    Object.assign(this, { front, rows, ttlSecs, log, alsoRenew });
  }

  key(sid) {
    return `sess:${this.rows.sealer.hashId(sid)}`;
  }

  /** `alsoRenew`, then the store's callback; a renewal that fails does not fail the request. */
  renewDependents(sid, ttl, callback) {
    const done = () => callback(null);
    Promise.resolve()
      .then(() => this.alsoRenew(sid, ttl))
      .then(done, (e) => {
        this.log.debug(`renewing what lives with session: ${e.message}`);
        done();
      });
  }

  /** Seconds the session has left, as connect-redis computes its TTL. */
  ttl(sess) {
    const expires = sess && sess.cookie && sess.cookie.expires;
    if (!expires) return this.ttlSecs;
    return Math.max(1, Math.ceil((new Date(expires).getTime() - Date.now()) / 1000));
  }

  get(sid, callback) {
    this.front.get(sid, (redisError, sess) => {
      if (!redisError && sess) return callback(null, sess);
      if (redisError) this.log.debug(`session read falls back to postgres: ${redisError.message}`);
      const key = this.key(sid);
      this.rows.read(key).then(
        (sealed) => {
          const text = sealed === null ? null : this.rows.open(sealed, key);
          let found = null;
          try {
            found = text === null ? null : JSON.parse(text);
          } catch (e) {
            this.log.warn(`${key}: not a session: ${e.message}`); // reads as no session
          }
          if (found === null) return callback(null, null);
          if (!redisError) this.front.set(sid, found, () => {}); // read-through copy, best effort
          callback(null, found);
        },
        (e) => callback(redisError ? new StoreError("redis+postgres", e.cause || e) : e),
      );
    });
  }

  set(sid, sess, callback = () => {}) {
    const key = this.key(sid);
    const ttl = this.ttl(sess);
    this.rows.write(key, this.rows.sealer.seal(JSON.stringify(sess), key), ttl).then(() => {
      this.front.set(sid, sess, (e) => {
        if (e) this.log.debug(`session write reached postgres only: ${e.message}`);
        this.renewDependents(sid, ttl, callback);
      });
    }, callback);
  }

  touch(sid, sess, callback = () => {}) {
    const ttl = this.ttl(sess);
    this.rows.renew(this.key(sid), ttl).then(() => {
      this.front.touch(sid, sess, () => this.renewDependents(sid, ttl, callback));
    }, callback);
  }

  destroy(sid, callback = () => {}) {
    this.rows.remove(this.key(sid)).then(() => this.front.destroy(sid, (e) => callback(e || null)), callback);
  }
}

/** Counts Redis keys under a prefix with SCAN (for /metrics). */
async function countRedisKeys(redis, pattern) {
  let n = 0;
  for await (const keys of redis.scanIterator({ MATCH: pattern, COUNT: 1000 })) {
    n += keys.length;
  }
  return n;
}

/** Rows and payload bytes of this namespace's kv rows under a key prefix (for /metrics). */
async function kvSize(pool, namespace, prefix) {
  const { rows } = await pool.query(
    `SELECT count(*)::bigint AS n, COALESCE(SUM(length(data)), 0)::bigint AS bytes FROM ${KV_TABLE}
     WHERE ns = $1 AND key LIKE $2 AND (expires_at IS NULL OR expires_at > now())`,
    [namespace, `${prefix}%`],
  );
  return { entries: Number(rows[0].n), bytes: Number(rows[0].bytes) };
}

/** Live sessions and their bytes in a connect-pg-simple table (for /metrics). */
async function sessionTableSize(pool, table) {
  const { rows } = await pool.query(
    `SELECT count(*)::bigint AS n, COALESCE(SUM(length(sess::text)), 0)::bigint AS bytes FROM "${table}" WHERE expire > now()`,
  );
  return { entries: Number(rows[0].n), bytes: Number(rows[0].bytes) };
}

module.exports = {
  connectRedis,
  connectPostgres,
  sessionTable,
  ensureTables,
  guardSessionStore,
  BlobStore,
  SealedRows,
  PartitionStore,
  TieredSessionStore,
  countRedisKeys,
  kvSize,
  sessionTableSize,
};
