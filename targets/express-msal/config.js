// Settings from the environment, read once at start. The harness starts N
// instances per option, each with its own PORT and INSTANCE_ID and the same
// everything else.

"use strict";

const OPTIONS = ["option1", "option2", "option3", "option4"];

function read(env = process.env) {
  const option = env.OPTION || "option1";
  if (!OPTIONS.includes(option)) {
    throw new Error(`OPTION must be one of ${OPTIONS.join(", ")}, not ${option}`);
  }
  const port = int(env.PORT, 8080, "PORT");
  const authority = entraAuthority(env.IDP_AUTHORITY || "", env.IDP_TENANT || "organizations");
  const idpOrigin = new URL(authority).origin;
  const settings = {
    option,
    port,
    host: env.HOST || "127.0.0.1",
    instanceId: env.INSTANCE_ID || `express-${port}`,
    authority,
    // MSAL asks login.microsoftonline.com about any host it does not know,
    // unless the host is listed here (mock-idp/README.md, "Point your own MSAL
    // app at it").
    knownAuthority: new URL(authority).host,
    apiUrl: env.IDP_API_URL || `${idpOrigin}/api/me`,
    apiAudience: (env.API_AUDIENCE || "api://mock-api").replace(/\/+$/, ""),
    clientId: env.CLIENT_ID || "harness-app",
    clientSecret: env.CLIENT_SECRET || "harness-secret",
    redirectUri: env.REDIRECT_URI || `http://127.0.0.1:${port}/auth/callback`,
    redisUrl: env.REDIS_URL || "redis://127.0.0.1:6379",
    databaseUrl: env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres",
    namespace: env.NAMESPACE || "express",
    // The defaults are for local runs only; every instance needs the same values.
    encryptionSecret: env.ENCRYPTION_SECRET || "local-only-encryption-secret",
    encryptionKeyId: env.ENCRYPTION_KEY_ID || "k1",
    previousKeyIds: (env.ENCRYPTION_PREVIOUS_KEY_IDS || "").split(",").filter(Boolean),
    sessionSecret: env.SESSION_SECRET || "local-only-session-secret",
    cookieName: env.COOKIE_NAME || "app_session",
    sessionTtlSecs: int(env.SESSION_TTL_SECS, 86400, "SESSION_TTL_SECS"),
    storeTimeoutMs: int(env.STORE_TIMEOUT_MS, 2000, "STORE_TIMEOUT_MS"),
    idpTimeoutMs: int(env.IDP_TIMEOUT_MS, 10000, "IDP_TIMEOUT_MS"),
    logLevel: env.LOG_LEVEL || "info",
  };
  if (!/^[A-Za-z0-9_.-]+$/.test(settings.namespace)) {
    throw new Error(`NAMESPACE may hold letters, digits, '_', '.', '-' only, not "${settings.namespace}"`);
  }
  return settings;
}

/**
 * MSAL Node in its default (Entra ID) mode wants `https://host[:port]/<tenant>`.
 * Also taken, so a harness can hand over whichever URL it has: the tenant
 * issuer `https://host:port/<tenant>/v2.0` (the `/v2.0` is dropped) and the
 * plain issuer `https://host:port` (IDP_TENANT is appended, by default
 * `organizations`, which the mock IdP serves like any tenant).
 */
function entraAuthority(raw, tenant) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`IDP_AUTHORITY must be a URL like https://127.0.0.1:9443/<tenant>, not "${raw}"`);
  }
  if (url.protocol !== "https:") throw new Error(`IDP_AUTHORITY must be https (MSAL refuses others), not "${raw}"`);
  const path = url.pathname.replace(/\/+$/, "").replace(/\/v2\.0$/, "");
  const segments = path.split("/").filter(Boolean);
  if (segments.length > 1) throw new Error(`IDP_AUTHORITY must name one tenant, not "${raw}"`);
  return `${url.origin}/${segments[0] || tenant}`;
}

function int(value, fallback, name) {
  if (value === undefined || value === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a whole number, not "${value}"`);
  return n;
}

module.exports = { read, entraAuthority, OPTIONS };
