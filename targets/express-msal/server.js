// The seed's own stack: Express + express-session + MSAL Node, signing in
// against the mock IdP (or Entra ID) as a confidential client, in one of the
// four configurations (OPTION=option1..option4), speaking the harness's
// observable contract. See README.md beside this file.

"use strict";

const express = require("express");
const msal = require("@azure/msal-node");
const config = require("./config");
const contract = require("./contract");
const options = require("./options");
const sessions = require("./sessions");
const { Idp } = require("./idp");
const { Metrics } = require("./metrics");

const { bumpVersion } = options;
const { save, regenerate, destroy } = sessions;

function logger(level) {
  const order = { debug: 0, info: 1, warn: 2, error: 3 };
  const at = order[level] ?? 1;
  const line = (lvl) => (msg) => {
    if (order[lvl] >= at) process.stderr.write(`${new Date().toISOString()} ${lvl} ${msg}\n`);
  };
  return { debug: line("debug"), info: line("info"), warn: line("warn"), error: line("error") };
}

/** Scope sets /data/{resource} spreads resources over (the reference app's). */
const DATA_SCOPES = [["data.read"], ["data.write"], ["api.write"], ["data.read", "data.write"]];

/**
 * The reference app's resource -> scope set mapping: h = h * 31 + byte over
 * the resource's UTF-8 bytes in wrapping 64-bit arithmetic, modulo 4, so both
 * apps put a resource into the same cache entry.
 */
function dataScopes(resource) {
  let h = 0n;
  for (const b of Buffer.from(resource, "utf8")) h = (h * 31n + BigInt(b)) & 0xffffffffffffffffn;
  return DATA_SCOPES[Number(h % BigInt(DATA_SCOPES.length))];
}

function createApp(settings, log) {
  const metrics = new Metrics(settings.instanceId);
  const idp = new Idp(settings, metrics);
  const option = options.build(settings, idp, log);
  const scope = (short) => `${settings.apiAudience}/${short}`;
  const apiRead = scope("api.read");
  const crypto = new msal.CryptoProvider();

  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.use(contract.headers(settings.instanceId));
  // While stopping, every answer closes its connection: a client that keeps
  // its connection busy would otherwise hold the drain until the 5 s cut-off.
  app.locals.draining = false;
  app.use((req, res, next) => {
    if (req.app.locals.draining) res.set("Connection", "close");
    next();
  });

  // Not behind the session: the harness polls these while stores may be down.
  app.get("/healthz", (req, res) => res.type("text/plain").send("ok"));
  app.get("/metrics", async (req, res) => {
    const sizes = await option.sizes().catch(() => []);
    res.type("text/plain; version=0.0.4").send(metrics.render(sizes, option.undecryptable()));
  });

  app.use(sessions.middleware(settings, option.store));
  app.use(express.json({ limit: "16kb" }));

  const signedIn = (req) => {
    if (!req.session || !req.session.account) throw contract.notSignedIn();
  };

  app.get("/", (req, res) => {
    const user = (req.session && req.session.account && req.session.user) || null;
    res.json({ instance: settings.instanceId, signed_in: user !== null, user });
  });

  app.get("/login", async (req, res) => {
    const { verifier, challenge } = await crypto.generatePkceCodes();
    const pending = { state: crypto.createNewGuid(), nonce: crypto.createNewGuid(), verifier };
    const client = await option.client(req);
    const url = await client.getAuthCodeUrl({
      scopes: [apiRead],
      redirectUri: settings.redirectUri,
      codeChallenge: challenge,
      codeChallengeMethod: "S256",
      state: pending.state,
      nonce: pending.nonce,
      loginHint: typeof req.query.login_hint === "string" ? req.query.login_hint : undefined,
    });
    req.session.pending = pending;
    bumpVersion(req.session);
    await save(req);
    res.redirect(302, url);
  });

  app.get("/auth/callback", async (req, res) => {
    if (req.query.error) throw contract.badRequest(`the IdP refused the sign-in: ${req.query.error}`);
    const pending = req.session.pending;
    if (!pending) throw contract.badRequest("no sign-in in progress");
    if (req.query.state !== pending.state) throw contract.badRequest("state does not match the sign-in");
    if (typeof req.query.code !== "string") throw contract.badRequest("no code");
    // A browser that signs in again leaves no token partition behind.
    if (req.session.account) await option.dropPartition(req);
    // A new session id at sign-in (session fixation), before the tokens are
    // stored: option4 partitions by this new id, option3 keeps them in it.
    await regenerate(req);
    const client = await option.client(req);
    const result = await client.acquireTokenByCode(
      {
        code: req.query.code,
        scopes: [apiRead],
        redirectUri: settings.redirectUri,
        codeVerifier: pending.verifier,
        state: pending.state,
        nonce: pending.nonce,
      },
      { code: req.query.code, state: req.query.state },
    );
    const claims = result.idTokenClaims || {};
    req.session.account = result.account;
    req.session.user = (result.account && result.account.username) || claims.preferred_username || claims.sub;
    req.session.idToken = result.idToken; // for id_token_hint at logout
    req.session.cart = [];
    bumpVersion(req.session);
    await save(req);
    res.redirect(302, "/");
  });

  /** A silently acquired token for `scopes`, used on the protected API. */
  async function callApi(req, res, scopes, resource) {
    signedIn(req);
    const versionBefore = req.session.version;
    const client = await option.client(req);
    const result = await client.acquireTokenSilent({ account: req.session.account, scopes });
    // MSAL says where the token came from: fromCache is false when it
    // redeemed the refresh token (or the code) for it.
    const source = result.fromCache ? "cache" : "refresh";
    metrics.tokenSource(source);
    // Option3 changed the session if MSAL refreshed: store it before using
    // the token, so a failed write is a 503 and not a lost refresh token.
    if (req.session.version !== versionBefore) await save(req);
    const api = await idp.callApi(result.accessToken);
    const reply = { user: req.session.user, token_source: source, api };
    if (resource !== undefined) {
      reply.resource = resource;
      reply.scopes = scopes.join(" ");
    }
    res.json(reply);
  }

  app.get("/profile", (req, res) => callApi(req, res, [apiRead]));
  app.get("/data/:resource", (req, res) =>
    callApi(req, res, dataScopes(req.params.resource).map(scope), req.params.resource),
  );

  app.get("/cart", (req, res) => {
    signedIn(req);
    res.json({ version: req.session.version, items: req.session.cart || [] });
  });

  app.post("/cart", async (req, res) => {
    signedIn(req);
    const item = req.body && req.body.item;
    if (typeof item !== "string" || item.length === 0 || Buffer.byteLength(item) > 256) {
      throw contract.badRequest("item must be 1 to 256 bytes");
    }
    // express-session loaded the whole session at the start of the request
    // and writes it whole: a concurrent write to the same session is lost.
    const cart = req.session.cart || [];
    if (!cart.includes(item)) cart.push(item);
    req.session.cart = cart;
    bumpVersion(req.session);
    await save(req);
    res.json({ version: req.session.version, items: cart });
  });

  app.get("/logout", async (req, res) => {
    let idpSessionEnded = false;
    if (req.session && Number.isInteger(req.session.version)) {
      const idToken = req.session.idToken;
      if (req.session.account) await option.forgetTokens(req);
      await destroy(req);
      // The local session is gone either way; an IdP that does not answer
      // only means its session outlives this one, which the reply says.
      if (idToken) idpSessionEnded = await idp.endSession(idToken).catch(() => false);
    }
    res.clearCookie(settings.cookieName, { path: "/" });
    res.json({ signed_out: true, idp_session_ended: idpSessionEnded });
  });

  app.use((req, res) => res.status(404).json({ error: "not_found", detail: `${req.method} ${req.path}` }));
  app.use(contract.errorHandler(log));
  return { app, option };
}

async function main() {
  const settings = config.read();
  const log = logger(settings.logLevel);
  const { app, option } = createApp(settings, log);
  await option.start();
  const server = app.listen(settings.port, settings.host, (err) => {
    // Express 5 hands a failed listen (port taken) to this callback.
    if (err) {
      log.error(`cannot listen on ${settings.host}:${settings.port}: ${err.message}`);
      process.exit(1);
    }
    log.info(`${settings.instanceId}: ${settings.option} on http://${settings.host}:${settings.port}`);
  });
  // Keep-alive longer than the harness's pooled connections expect to idle.
  server.keepAliveTimeout = 65000;
  server.headersTimeout = 66000; // must outlast keepAliveTimeout
  const stop = () => {
    log.info("stopping");
    app.locals.draining = true;
    server.close(() => option.close().finally(() => process.exit(0)));
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`${e.stack || e}\n`);
    process.exit(1);
  });
}

module.exports = { createApp, dataScopes };
