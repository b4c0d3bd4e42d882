// The session middleware every option uses, over options 2 and 3's store
// (connect-pg-simple on the real Postgres this kind of machine runs;
// DATABASE_URL, default the local server): a session in use keeps living
// past the idle timeout counted from its creation, in the store at every
// moment (not only after the end-of-request touch), and the browser's
// cookie is renewed by reads too.

"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const express = require("express");
const stores = require("../stores");
const sessions = require("../sessions");
const { pgSessionStore } = require("../options");

const quiet = { debug() {}, info() {}, warn() {} };
const settings = {
  databaseUrl: process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres",
  storeTimeoutMs: 2000,
  instanceId: "sessions-test",
  cookieName: "sid",
  sessionSecret: "sessions-test-secret",
  sessionTtlSecs: 2,
};

/** An app with the middleware: POST /write changes and saves the session, GET /read only reads it. */
async function serve(t) {
  const pool = stores.connectPostgres(settings, quiet);
  const table = stores.sessionTable(`sessions-test-${process.pid}-${Date.now()}`);
  await stores.ensureTables(pool, { sessions: table });
  const store = pgSessionStore(pool, table, quiet);
  const app = express();
  app.use(sessions.middleware(settings, store));
  // Seconds the stored row has left, as a reader of the store sees it right now.
  const left = async (sid) => {
    const { rows } = await pool.query(`SELECT extract(epoch FROM expire - now()) AS left FROM "${table}" WHERE sid = $1`, [
      sid,
    ]);
    return rows.length ? Number(rows[0].left) : null;
  };
  app.post("/write", async (req, res) => {
    req.session.writes = (req.session.writes || 0) + 1;
    await sessions.save(req);
    res.json({ writes: req.session.writes, left: await left(req.sessionID) });
  });
  app.get("/read", (req, res) => res.json({ writes: req.session.writes ?? null }));
  const server = await new Promise((ok) => {
    const s = app.listen(0, "127.0.0.1", () => ok(s));
  });
  t.after(async () => {
    server.close();
    store.close();
    await pool.query(`DROP TABLE IF EXISTS "${table}"`).catch(() => {});
    await pool.end();
  });
  const base = `http://127.0.0.1:${server.address().port}`;
  return { base };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("a session saved by a handler is stored with its expiry renewed, however old it is", async (t) => {
  const { base } = await serve(t);
  const first = await fetch(`${base}/write`, { method: "POST" });
  const cookie = first.headers.get("set-cookie").split(";")[0];
  assert.equal((await first.json()).writes, 1);
  // Every 0.8 s for 4 s, twice the 2 s idle timeout: in use all along.
  for (let writes = 2; writes <= 6; writes++) {
    await sleep(800);
    const reply = await fetch(`${base}/write`, { method: "POST", headers: { cookie } });
    const body = await reply.json();
    assert.equal(body.writes, writes, "the session is still there");
    // Right after the handler's save, before the end-of-request touch: the
    // row must not read as expired (it did, once the session was 2 s old).
    assert.ok(body.left > 0.5, `write ${writes}: the stored row has ${body.left} s left`);
  }
});

test("a read renews the browser's cookie, not only a write", async (t) => {
  const { base } = await serve(t);
  const first = await fetch(`${base}/write`, { method: "POST" });
  const cookie = first.headers.get("set-cookie").split(";")[0];
  const read = await fetch(`${base}/read`, { headers: { cookie } });
  assert.equal((await read.json()).writes, 1);
  const renewed = read.headers.get("set-cookie");
  assert.ok(renewed && renewed.startsWith(cookie), `the read sent the cookie again: ${renewed}`);
  assert.match(renewed, /Expires=/);
});
