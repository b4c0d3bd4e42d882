// Option4's stores on the real Redis and Postgres this kind of machine runs
// (REDIS_URL / DATABASE_URL, default the local servers; .ci/run starts them):
// sessions survive a Redis flush through Postgres and are copied back,
// logout removes both copies, a tampered Postgres row reads as no session,
// and token partitions fall back the same way.

"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { RedisStore } = require("connect-redis");
const { Sealer } = require("../crypto");
const stores = require("../stores");

const settings = {
  redisUrl: process.env.REDIS_URL || "redis://127.0.0.1:6379",
  databaseUrl: process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres",
  storeTimeoutMs: 2000,
  instanceId: "tiered-test",
};
const quiet = { debug() {}, info() {}, warn() {} };

/** Connected stores under a namespace of their own, removed afterwards. */
async function setUp(t, { ttlSecs = 600 } = {}) {
  const namespace = `tiered-test-${process.pid}-${Date.now()}`;
  const redis = stores.connectRedis(settings, quiet);
  for (let i = 0; !redis.isReady; i++) {
    assert.ok(i < 100, `Redis at ${settings.redisUrl} is not answering`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const pool = stores.connectPostgres(settings, quiet);
  await stores.ensureTables(pool, { sessions: null });
  const sealer = new Sealer("tiered-secret", "k1");
  const rows = new stores.SealedRows({ pool, sealer, namespace, log: quiet });
  const front = stores.guardSessionStore(new RedisStore({ client: redis, prefix: `${namespace}:sess:` }), "redis");
  const partitions = new stores.PartitionStore({ redis, rows, namespace, ttlSecs, log: quiet });
  // As option4 wires them: a session's partition is renewed with the session.
  const sessions = new stores.TieredSessionStore({
    front,
    rows,
    ttlSecs,
    log: quiet,
    alsoRenew: (sid, ttl) => partitions.renew(`tc:${sealer.hashId(sid)}`, ttl),
  });
  t.after(async () => {
    for await (const keys of redis.scanIterator({ MATCH: `${namespace}:*`, COUNT: 1000 })) {
      if (keys.length) await redis.del(keys);
    }
    // (A test that closed the pool wrote no rows.)
    await pool.query("DELETE FROM express_msal_kv WHERE ns = $1", [namespace]).catch(() => {});
    await Promise.allSettled([redis.quit(), pool.end()]);
  });
  return { namespace, redis, pool, sealer, sessions, partitions };
}

const call = (fn) => new Promise((resolve, reject) => fn((e, v) => (e ? reject(e) : resolve(v))));

test("a session outlives a Redis flush: read from Postgres, then copied back into Redis", async (t) => {
  const { namespace, redis, pool, sealer, sessions } = await setUp(t);
  const sess = { cookie: { maxAge: 600000 }, account: { username: "alice" }, version: 3 };
  await call((cb) => sessions.set("sid-1", sess, cb));

  const redisKey = `${namespace}:sess:sid-1`;
  assert.ok(await redis.get(redisKey), "written to Redis");
  const { rows } = await pool.query("SELECT key, data FROM express_msal_kv WHERE ns = $1", [namespace]);
  assert.equal(rows.length, 1, "and to Postgres");
  assert.equal(rows[0].key, `sess:${sealer.hashId("sid-1")}`, "keyed by a keyed hash, not the id");
  assert.ok(!rows[0].data.includes("alice"), "sealed at rest");

  await redis.del(redisKey); // what a Redis restart does to it
  assert.deepEqual(await call((cb) => sessions.get("sid-1", cb)), sess, "Postgres answers");
  assert.ok(await redis.get(redisKey), "and the session is back in Redis");
});

test("logout removes both copies", async (t) => {
  const { namespace, redis, pool, sessions } = await setUp(t);
  await call((cb) => sessions.set("sid-2", { cookie: {}, version: 1 }, cb));
  await call((cb) => sessions.destroy("sid-2", cb));
  assert.equal(await redis.get(`${namespace}:sess:sid-2`), null);
  const { rows } = await pool.query("SELECT 1 FROM express_msal_kv WHERE ns = $1", [namespace]);
  assert.equal(rows.length, 0);
  assert.equal(await call((cb) => sessions.get("sid-2", cb)), null);
});

test("a tampered Postgres copy reads as no session, not an error", async (t) => {
  const { namespace, redis, pool, sessions } = await setUp(t);
  await call((cb) => sessions.set("sid-3", { cookie: {}, version: 1 }, cb));
  await redis.del(`${namespace}:sess:sid-3`);
  await pool.query("UPDATE express_msal_kv SET data = data || 'x' WHERE ns = $1", [namespace]);
  assert.equal(await call((cb) => sessions.get("sid-3", cb)), null);
});

test("a session write Postgres refuses is a store error (503), and nothing reaches Redis", async (t) => {
  const { namespace, redis, pool, sessions } = await setUp(t);
  await pool.end(); // Postgres gone for this store
  await assert.rejects(
    call((cb) => sessions.set("sid-4", { cookie: {}, version: 1 }, cb)),
    (e) => e instanceof Error && e.store === "postgres",
  );
  assert.equal(await redis.get(`${namespace}:sess:sid-4`), null);
});

test("a token partition falls back to Postgres after a Redis flush", async (t) => {
  const { namespace, redis, partitions } = await setUp(t);
  await partitions.set("tc:abc", "serialized cache");
  await redis.del(`${namespace}:tc:abc`);
  assert.equal(await partitions.get("tc:abc"), "serialized cache");
  assert.ok(await redis.get(`${namespace}:tc:abc`), "copied back");
  await partitions.delete("tc:abc");
  assert.equal(await partitions.get("tc:abc"), "");
});

test("a session in use keeps its token partition alive, though nothing reads the tokens", async (t) => {
  const { namespace, redis, sealer, sessions, partitions } = await setUp(t, { ttlSecs: 2 });
  const key = `tc:${sealer.hashId("sid-in-use")}`;
  const expiringIn = (secs) => ({ cookie: { expires: new Date(Date.now() + secs * 1000) }, cart: [] });
  await partitions.set(key, "tokens");
  await call((cb) => sessions.set("sid-in-use", expiringIn(2), cb));
  // Used every 0.8 s for 2.4 s, past the partition's own 2 s: touched, never read for tokens.
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 800));
    await call((cb) => sessions.touch("sid-in-use", expiringIn(2), cb));
  }
  assert.ok((await redis.ttl(`${namespace}:${key}`)) > 0, "the Redis copy was renewed");
  await redis.del(`${namespace}:${key}`);
  assert.equal(await partitions.get(key), "tokens", "and the Postgres copy too");
});
