// The four configurations (the seed's options, the topologies of
// docs/architecture.md, "The four topologies"): for each, the
// express-session store, the MSAL client a request uses (with its
// cache plugin, if any), what logout does to the tokens, and what /metrics
// can count.

"use strict";

const session = require("express-session");
const { RedisStore } = require("connect-redis");
const PgStoreFactory = require("connect-pg-simple");
const msal = require("@azure/msal-node");
const { Sealer, UndecryptableError } = require("./crypto");
const stores = require("./stores");

/** Bumps the session's version: the contract's x-session-version, monotonic per session. */
function bumpVersion(sess) {
  sess.version = (Number.isInteger(sess.version) ? sess.version : 0) + 1;
}

/**
 * Option2: the persistence pattern of MSAL's caching docs. One blob for the
 * whole app: loaded before every cache access, written after every access
 * that changed it. One client application per process, as with option1.
 */
class AppBlobPlugin {
  constructor(blobs) {
    this.blobs = blobs;
  }

  async beforeCacheAccess(context) {
    context.tokenCache.deserialize(await this.blobs.load());
  }

  async afterCacheAccess(context) {
    if (context.cacheHasChanged) await this.blobs.save(context.tokenCache.serialize());
  }
}

/**
 * Option3: the token cache lives in the session (req.session.tokenCache).
 * One plugin, and so one client application, per request, bound to that
 * request's session; express-session writes the session back (the handler
 * saves explicitly before answering, so a failed write is a 503).
 */
class SessionCachePlugin {
  constructor(req) {
    this.req = req;
  }

  async beforeCacheAccess(context) {
    context.tokenCache.deserialize(this.req.session.tokenCache || "");
  }

  async afterCacheAccess(context) {
    if (context.cacheHasChanged) {
      this.req.session.tokenCache = context.tokenCache.serialize();
      bumpVersion(this.req.session);
    }
  }
}

/**
 * Option4: MSAL's IPartitionManager for DistributedCachePlugin, partitioning
 * by session id rather than by account (MSAL's sample reads the account's
 * homeAccountId out of the session instead): each browser session gets its
 * own partition, so two sessions of one user never share tokens. Both the
 * read key and the write key are the session's, whatever account MSAL
 * hands extractKey. The key is a keyed hash of the session id, so a reader
 * of the store cannot turn a key into a cookie.
 */
class SessionPartitionManager {
  constructor(key) {
    this.key = key;
  }

  async getKey() {
    return this.key;
  }

  async extractKey() {
    return this.key;
  }
}

/**
 * Builds one option.
 * @returns {{
 *   store: session.Store,
 *   client(req): Promise<msal.ConfidentialClientApplication>,
 *   forgetTokens(req): Promise<void>,
 *   dropPartition(req): Promise<void>,
 *   sizes(): Promise<{store: string, entries?: number, bytes?: number, accounts?: number}[]>,
 *   undecryptable(): number,
 *   start(): Promise<void>,
 *   close(): Promise<void>,
 * }}
 */
function build(settings, idp, log) {
  // Every client is handed the discovery document fetched once (idp.js), so
  // building a client per request costs no IdP call.
  let metadata = null;
  const authorityMetadata = async () => (metadata ??= JSON.stringify(await idp.discovery()));
  const msalConfig = async (cachePlugin) => ({
    auth: {
      clientId: settings.clientId,
      clientSecret: settings.clientSecret,
      authority: settings.authority,
      knownAuthorities: [settings.knownAuthority],
      authorityMetadata: await authorityMetadata(),
    },
    cache: cachePlugin ? { cachePlugin } : {},
    system: {
      networkClient: idp.http,
      loggerOptions: {
        logLevel: msal.LogLevel.Warning,
        piiLoggingEnabled: false,
        loggerCallback: (level, message) => log.debug(`msal: ${message}`),
      },
    },
  });

  // One client application for the process (options 1 and 2), made on first use.
  const perProcess = (makePlugin) => {
    let client = null;
    let made = null; // the client once made, for /metrics (which must not wait on the IdP)
    const get = async () => {
      if (!client) {
        client = msalConfig(makePlugin && makePlugin()).then((c) => (made = new msal.ConfidentialClientApplication(c)));
        client.catch(() => {
          client = null;
        });
      }
      return client;
    };
    get.made = () => made;
    return get;
  };

  const noop = async () => {};
  const base = { forgetTokens: noop, dropPartition: noop, undecryptable: () => 0, start: noop, close: noop };

  switch (settings.option) {
    case "option1": {
      // express-session's default MemoryStore (it warns that it leaks and is
      // per process: that is what this option measures) and MSAL's default
      // in-memory cache in one client for every session of the process.
      const store = new session.MemoryStore();
      const client = perProcess(null);
      return {
        ...base,
        store,
        client: () => client(),
        // MSAL's sign-out for a web app: remove the account from the cache.
        // The cache is shared, so every session of that user on this
        // instance loses its tokens too.
        async forgetTokens(req) {
          const cache = (await client()).getTokenCache();
          await cache.removeAccount(req.session.account);
        },
        async sizes() {
          const sessions = Object.keys(store.sessions || {}).length;
          const made = client.made();
          const kv = made ? made.getTokenCache().getKVStore() : {};
          // Credentials (access, refresh, ID tokens) and accounts, as the
          // reference app counts its instance-wide cache.
          const tokens = Object.values(kv).filter((v) => v && (v.credentialType || v.authorityType)).length;
          const accounts = Object.values(kv).filter((v) => v && v.authorityType).length;
          return [
            { store: "memory", entries: sessions },
            { store: "instance_token_cache", entries: tokens, accounts },
          ];
        },
      };
    }

    case "option2": {
      const pool = stores.connectPostgres(settings, log);
      const table = stores.sessionTable(settings.namespace);
      const blobs = new stores.BlobStore(pool, settings.namespace);
      const client = perProcess(() => new AppBlobPlugin(blobs));
      return {
        ...base,
        store: pgSessionStore(pool, table, log),
        client: () => client(),
        // The blob keeps the account's tokens after logout (the pattern has no
        // per-session place to remove them from, and removing the account
        // would sign the user out of every other browser).
        start: () => startTables(pool, table, log),
        sizes: () => postgresSizes(pool, table, settings.namespace, "tc:app"),
        close: () => pool.end(),
      };
    }

    case "option3": {
      const pool = stores.connectPostgres(settings, log);
      const table = stores.sessionTable(settings.namespace);
      return {
        ...base,
        store: pgSessionStore(pool, table, log),
        client: async (req) => new msal.ConfidentialClientApplication(await msalConfig(new SessionCachePlugin(req))),
        // The tokens go with the session when it is destroyed.
        start: () => startTables(pool, table, log),
        sizes: () => postgresSizes(pool, table, settings.namespace, null),
        close: () => pool.end(),
      };
    }

    case "option4": {
      const redis = stores.connectRedis(settings, log);
      const pool = stores.connectPostgres(settings, log);
      const sealer = new Sealer(settings.encryptionSecret, settings.encryptionKeyId, settings.previousKeyIds);
      const rows = new stores.SealedRows({ pool, sealer, namespace: settings.namespace, log });
      const partitions = new stores.PartitionStore({
        redis,
        rows,
        namespace: settings.namespace,
        ttlSecs: settings.sessionTtlSecs,
        log,
      });
      const partitionKey = (sid) => `tc:${sealer.hashId(sid)}`;
      const front = new RedisStore({
        client: redis,
        prefix: `${settings.namespace}:sess:`,
        // Sessions hold the ID token and account claims: sealed at rest too.
        serializer: {
          stringify: (sess) => sealer.seal(JSON.stringify(sess), "session"),
          parse: (text) => {
            try {
              return JSON.parse(sealer.open(text, "session"));
            } catch (e) {
              if (e instanceof UndecryptableError) return null; // no session: sign in again
              throw e;
            }
          },
        },
      });
      stores.guardSessionStore(front, "redis");
      // The seed's option 4: sessions in Redis "supported by a database".
      // A session's token partition lives as long as the session: renewed
      // whenever the session is written or touched, not only when MSAL reads it.
      const store = new stores.TieredSessionStore({
        front,
        rows,
        ttlSecs: settings.sessionTtlSecs,
        log,
        alsoRenew: (sid, ttl) => partitions.renew(partitionKey(sid), ttl),
      });
      let sweeper = null;
      return {
        ...base,
        store,
        client: async (req) =>
          new msal.ConfidentialClientApplication(
            await msalConfig(
              new msal.DistributedCachePlugin(partitions, new SessionPartitionManager(partitionKey(req.session.id))),
            ),
          ),
        forgetTokens: (req) => partitions.delete(partitionKey(req.session.id)),
        // A signed-in session replaced by a new sign-in leaves no partition behind.
        dropPartition: (req) => partitions.delete(partitionKey(req.session.id)),
        undecryptable: () => sealer.undecryptable,
        async start() {
          await startTables(pool, null, log);
          sweeper = setInterval(() => rows.sweep().catch(() => {}), 60000);
          sweeper.unref();
        },
        async sizes() {
          const out = [];
          try {
            out.push({ store: "redis", entries: await stores.countRedisKeys(redis, `${settings.namespace}:*`) });
          } catch {
            // unreachable: left out
          }
          try {
            const tokens = await stores.kvSize(pool, settings.namespace, "tc:");
            const sessions = await stores.kvSize(pool, settings.namespace, "sess:");
            out.push({ store: "postgres", entries: tokens.entries + sessions.entries, bytes: tokens.bytes + sessions.bytes });
          } catch {
            // unreachable: left out
          }
          return out;
        },
        async close() {
          clearInterval(sweeper);
          await Promise.allSettled([redis.quit(), pool.end()]);
        },
      };
    }

    default:
      throw new Error(`unknown option ${settings.option}`);
  }
}

function pgSessionStore(pool, tableName, log) {
  const PgStore = PgStoreFactory(session);
  const store = new PgStore({
    pool,
    tableName,
    createTableIfMissing: false, // startTables makes it, once for N instances
    pruneSessionInterval: 60,
    errorLog: (...args) => log.warn(`connect-pg-simple: ${args.join(" ")}`),
  });
  return stores.guardSessionStore(store, "postgres");
}

/** Creates the tables, retrying while Postgres is not there yet (the instance still starts). */
async function startTables(pool, sessionsTable, log) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await stores.ensureTables(pool, { sessions: sessionsTable });
      return;
    } catch (e) {
      if (attempt >= 30) throw e;
      if (attempt === 1) log.warn(`postgres: creating tables: ${e.message}; retrying`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** Postgres as one store: session rows plus the token blob row, if any. */
async function postgresSizes(pool, table, namespace, blobPrefix) {
  try {
    const sessions = await stores.sessionTableSize(pool, table);
    if (blobPrefix) {
      const blob = await stores.kvSize(pool, namespace, blobPrefix);
      sessions.entries += blob.entries;
      sessions.bytes += blob.bytes;
    }
    return [{ store: "postgres", ...sessions }];
  } catch {
    return [];
  }
}

module.exports = { build, bumpVersion, pgSessionStore };
