// Everything that talks to the IdP besides MSAL's own grant logic: the HTTP
// client MSAL sends its requests through (so token calls can be counted and
// time out), the authority metadata MSAL is handed, the protected API, and
// the server-side end-session call.

"use strict";

const { IdpCallError } = require("./contract");

/**
 * MSAL's `system.networkClient` (its documented INetworkModule extension
 * point). It does what MSAL Node's own HttpClient does (global fetch, JSON
 * body, status and headers back) and in addition:
 * - counts every call in /metrics as `app_idp_calls_total{call, outcome}`,
 *   with `call` the token grant (authorization_code, refresh_token) or the
 *   endpoint, so token calls can be compared with the IdP's own count;
 * - puts a timeout on POSTs too (MSAL's client has none for token calls), so
 *   a hung IdP answers `idp_unavailable` instead of holding the request.
 * Failures are thrown as plain errors, which MSAL turns into its
 * `network_error` ClientAuthError, as it does for its own client's.
 */
class CountingHttpClient {
  constructor(metrics, timeoutMs) {
    this.metrics = metrics;
    this.timeoutMs = timeoutMs;
  }

  async sendGetRequestAsync(url, options, timeout) {
    return this.send(url, "GET", options, timeout || this.timeoutMs, callName(url, null));
  }

  async sendPostRequestAsync(url, options) {
    const grant = new URLSearchParams((options && options.body) || "").get("grant_type");
    return this.send(url, "POST", options, this.timeoutMs, grant || callName(url, null));
  }

  async send(url, method, options, timeoutMs, call) {
    const init = {
      method,
      headers: (options && options.headers) || {},
      signal: AbortSignal.timeout(timeoutMs),
    };
    if (method === "POST") init.body = (options && options.body) || "";
    let response;
    try {
      response = await fetch(url, init);
    } catch (e) {
      this.metrics.idpCall(call, "unavailable");
      throw new Error(`${method} ${url}: ${why(e)}`);
    }
    let body;
    try {
      body = await response.json();
    } catch (e) {
      this.metrics.idpCall(call, outcomeOf(response.status, null));
      throw new Error(`${method} ${url}: ${response.status} with a body that is not JSON`);
    }
    this.metrics.idpCall(call, outcomeOf(response.status, body && body.error));
    const headers = {};
    response.headers.forEach((value, key) => {
      headers[key] = value;
    });
    return { headers, body, status: response.status };
  }
}

/** Why a fetch failed: undici says "fetch failed" and keeps the reason in `cause`. */
function why(e) {
  if (e.name === "TimeoutError") return "timed out";
  const cause = e.cause && (e.cause.code || e.cause.message);
  return cause ? `${e.message}: ${cause}` : e.message;
}

function callName(url, fallback) {
  const path = new URL(url).pathname;
  if (path.includes("openid-configuration")) return "discovery";
  if (path.endsWith("/token")) return "token";
  return fallback || path.split("/").filter(Boolean).pop() || "root";
}

/** The reference app's outcome labels: ok, unavailable, bad_answer, refused. */
function outcomeOf(status, error) {
  if (status >= 200 && status < 400) return "ok";
  if (status === 429 || status === 503) return "unavailable";
  if (status === 400 && error === "invalid_grant") return "refused";
  if (status === 401) return "refused";
  return "bad_answer";
}

class Idp {
  constructor(settings, metrics) {
    this.settings = settings;
    this.metrics = metrics;
    this.http = new CountingHttpClient(metrics, settings.idpTimeoutMs);
    this.metadata = null; // a promise of the discovery document, once fetched
  }

  /**
   * The authority's discovery document, fetched once per process and handed
   * to every MSAL client as `auth.authorityMetadata`, as MSAL's distributed
   * cache sample does: options 3 and 4 build a client per request, and each
   * would otherwise fetch discovery again (MSAL keeps it in the client's
   * in-memory cache, which a per-request client starts without).
   */
  async discovery() {
    if (!this.metadata) {
      const url = `${this.settings.authority}/v2.0/.well-known/openid-configuration`;
      this.metadata = this.getJson(url, "discovery").catch((e) => {
        this.metadata = null; // try again on the next request
        throw e;
      });
    }
    return this.metadata;
  }

  /** GET the protected API with an access token; answers its echo as it came. */
  async callApi(accessToken) {
    let response;
    try {
      response = await fetch(this.settings.apiUrl, {
        headers: { authorization: `Bearer ${accessToken}` },
        signal: AbortSignal.timeout(this.settings.idpTimeoutMs),
      });
    } catch (e) {
      this.metrics.idpCall("api", "unavailable");
      throw new IdpCallError("unavailable", `API: ${why(e)}`);
    }
    const text = await response.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      // judged below
    }
    this.metrics.idpCall("api", outcomeOf(response.status, body && body.error));
    if (response.status === 429 || response.status === 503) {
      throw new IdpCallError("unavailable", `API: ${response.status}`);
    }
    if (response.status === 401) {
      throw new IdpCallError("refused", `API refused the token: ${(body && body.error) || response.status}`);
    }
    if (!response.ok || !body || typeof body.sub !== "string") {
      throw new IdpCallError("bad_answer", `API answered ${response.status}: ${text.slice(0, 200)}`);
    }
    return body;
  }

  /**
   * Ends the IdP session the ID token belongs to, server-side (RP-initiated
   * logout with id_token_hint and no redirect). True when the IdP said so.
   */
  async endSession(idToken) {
    const doc = await this.discovery();
    if (!doc.end_session_endpoint || !idToken) return false;
    const url = new URL(doc.end_session_endpoint);
    url.searchParams.set("id_token_hint", idToken);
    try {
      const response = await fetch(url, { redirect: "manual", signal: AbortSignal.timeout(this.settings.idpTimeoutMs) });
      await response.arrayBuffer();
      this.metrics.idpCall("logout", outcomeOf(response.status, null));
      return response.status >= 200 && response.status < 400;
    } catch (e) {
      this.metrics.idpCall("logout", "unavailable");
      return false;
    }
  }

  async getJson(url, call) {
    let response;
    try {
      response = await fetch(url, { signal: AbortSignal.timeout(this.settings.idpTimeoutMs) });
    } catch (e) {
      this.metrics.idpCall(call, "unavailable");
      throw new IdpCallError("unavailable", `${call}: ${why(e)}`);
    }
    this.metrics.idpCall(call, outcomeOf(response.status, null));
    if (response.status === 429 || response.status === 503) throw new IdpCallError("unavailable", `${call}: ${response.status}`);
    if (!response.ok) throw new IdpCallError("bad_answer", `${call}: ${response.status}`);
    try {
      return await response.json();
    } catch {
      throw new IdpCallError("bad_answer", `${call}: not JSON`);
    }
  }
}

module.exports = { Idp, CountingHttpClient };
