// The harness's observable contract (contract/src/reply.rs in the workspace):
// the headers every response carries, the error shape, and how failures of
// the stores, the IdP and MSAL map onto the contract's error codes.

"use strict";

const msal = require("@azure/msal-node");

const INSTANCE_HEADER = "x-instance";
const SESSION_VERSION_HEADER = "x-session-version";

/** A failure with the contract's status and code. */
class AppError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

/** A store (Redis or Postgres) that failed or timed out. */
class StoreError extends Error {
  constructor(store, cause) {
    super(`${store}: ${cause && cause.message ? cause.message : cause}`);
    this.store = store;
    this.cause = cause;
  }
}

/** An IdP call of our own (the protected API, end-session, discovery) that failed. */
class IdpCallError extends Error {
  /** kind: "unavailable" (503), "bad_answer" (502) or "refused" (401). */
  constructor(kind, detail) {
    super(detail);
    this.kind = kind;
  }
}

const notSignedIn = () => new AppError(401, "not_signed_in", "no signed-in session for this cookie");
const badRequest = (detail) => new AppError(400, "bad_request", detail);

/**
 * Stamps `x-instance` on every response and `x-session-version` on those of
 * requests that have a stored session, read at the moment headers go out so
 * a handler that bumped the version (or destroyed the session) is reflected.
 */
function headers(instanceId) {
  return (req, res, next) => {
    res.setHeader(INSTANCE_HEADER, instanceId);
    const writeHead = res.writeHead;
    res.writeHead = function patchedWriteHead(...args) {
      const version = req.session && req.session.version;
      if (Number.isInteger(version) && !res.headersSent) {
        res.setHeader(SESSION_VERSION_HEADER, String(version));
      }
      return writeHead.apply(this, args);
    };
    next();
  };
}

/** What an error becomes on the wire: [status, {error, detail}]. */
function classify(err) {
  if (err instanceof AppError) return [err.status, err.code, err.message];
  if (err instanceof StoreError) return [503, "store_unavailable", err.message];
  if (err instanceof IdpCallError) {
    if (err.kind === "unavailable") return [503, "idp_unavailable", err.message];
    if (err.kind === "refused") return [401, "signin_required", err.message];
    return [502, "idp_error", err.message];
  }
  // MSAL's errors. InteractionRequiredAuthError: invalid_grant (refresh
  // token revoked or expired), no_tokens_found (nothing cached to refresh
  // with: signed out elsewhere, cache lost): the user must sign in again.
  if (err instanceof msal.InteractionRequiredAuthError) {
    return [401, "signin_required", `${err.errorCode}: ${err.errorMessage || err.message}`];
  }
  if (err instanceof msal.ServerError) {
    // The IdP answered a token request with an OAuth error. MSAL keeps the
    // body's `error`, not the HTTP status: temporarily_unavailable is what
    // Entra ID and the mock IdP send with 503 and 429; an empty code is
    // MSAL's own throttling (it remembers a 429/5xx for Retry-After, or 60 s).
    const code = err.errorCode || "";
    // invalid_grant: the refresh token was revoked, reused or expired. MSAL
    // raises InteractionRequiredAuthError for it only when the IdP adds a
    // suberror (as Entra ID does); the mock IdP sends none, so it arrives here.
    if (code === "invalid_grant") return [401, "signin_required", `token endpoint: invalid_grant ${err.errorMessage || ""}`.trim()];
    if (code === "" || code === "temporarily_unavailable" || /throttl/i.test(err.errorMessage || "")) {
      return [503, "idp_unavailable", `token endpoint: ${code || "throttled by MSAL"} ${err.errorMessage || ""}`.trim()];
    }
    return [502, "idp_error", `token endpoint: ${code} ${err.errorMessage || ""}`.trim()];
  }
  if (err instanceof msal.ClientAuthError || err instanceof msal.AuthError) {
    if (err.errorCode === "network_error") return [503, "idp_unavailable", `IdP unreachable: ${err.errorMessage || err.message}`];
    if (err.errorCode === "state_mismatch" || err.errorCode === "state_not_found") {
      return [400, "bad_request", `state does not match the sign-in: ${err.errorCode}`];
    }
    if (err.errorCode === "no_account_in_silent_request") return [401, "signin_required", err.errorCode];
    return [502, "idp_error", `${err.errorCode}: ${err.errorMessage || err.message}`];
  }
  if (err && err.type === "entity.parse.failed") return [400, "bad_request", "body is not JSON"];
  return [500, "internal", String(err && err.message ? err.message : err)];
}

/** Express's error handler: every error is `{"error": CODE, "detail": TEXT}`. */
function errorHandler(log) {
  // eslint-disable-next-line no-unused-vars
  return (err, req, res, next) => {
    const [status, code, detail] = classify(err);
    if (status >= 500) {
      log.warn(`${req.method} ${req.path}: ${status} ${code}: ${detail}`);
      log.debug(String((err && err.stack) || err));
    }
    if (res.headersSent) return res.end();
    res.status(status).json({ error: code, detail });
  };
}

module.exports = {
  INSTANCE_HEADER,
  SESSION_VERSION_HEADER,
  AppError,
  StoreError,
  IdpCallError,
  notSignedIn,
  badRequest,
  headers,
  classify,
  errorHandler,
};
