// Unit checks of the parts that need no IdP or store: at-rest encryption,
// the resource -> scope-set mapping shared with the reference app, the
// authority forms IDP_AUTHORITY takes, and how errors map onto the contract.
// The whole app is checked end to end by check.sh.

"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const msal = require("@azure/msal-node");
const { Sealer, UndecryptableError } = require("../crypto");
const { dataScopes } = require("../server");
const { entraAuthority } = require("../config");
const contract = require("../contract");

test("sealed records open with the same key and store key only", () => {
  const sealer = new Sealer("secret", "k1");
  const sealed = sealer.seal("token cache", "tc:a");
  assert.match(sealed, /^v1\.k1\./);
  assert.equal(sealer.open(sealed, "tc:a"), "token cache");
  assert.throws(() => sealer.open(sealed, "tc:b"), UndecryptableError, "moved to another key");
  assert.throws(() => new Sealer("other", "k1").open(sealed, "tc:a"), UndecryptableError, "another secret");
  const tampered = sealed.slice(0, -2) + (sealed.endsWith("A") ? "BB" : "AA");
  assert.throws(() => sealer.open(tampered, "tc:a"), UndecryptableError);
  assert.equal(sealer.undecryptable, 2);
});

test("a rotated key still opens records of the previous one", () => {
  const old = new Sealer("secret", "k1").seal("cache", "tc:a");
  const rotated = new Sealer("secret", "k2", ["k1"]);
  assert.equal(rotated.open(old, "tc:a"), "cache");
  assert.match(rotated.seal("cache", "tc:a"), /^v1\.k2\./);
  assert.throws(() => new Sealer("secret", "k2").open(old, "tc:a"), /unknown key id k1/);
});

test("store keys are a keyed hash of the session id", () => {
  const a = new Sealer("secret", "k1");
  assert.equal(a.hashId("sid"), new Sealer("secret", "k2").hashId("sid"), "stable across key rotation");
  assert.notEqual(a.hashId("sid"), new Sealer("other", "k1").hashId("sid"));
  assert.ok(!a.hashId("sid").includes("sid"));
});

test("resources map to the reference app's scope sets (h*31+b, wrapping 64-bit, mod 4)", () => {
  // Expected values computed independently (Python, arbitrary precision mod 2^64).
  assert.deepEqual(dataScopes("r1"), ["data.read", "data.write"]);
  assert.deepEqual(dataScopes("r2"), ["data.read"]);
  assert.deepEqual(dataScopes("r3"), ["data.write"]);
  assert.deepEqual(dataScopes("a-very-long-resource-name-that-wraps-64-bit-arithmetic-many-times-over"), ["data.read"]);
  assert.deepEqual(dataScopes("é"), ["api.write"]);
});

test("IDP_AUTHORITY takes the Entra authority, the tenant issuer and the plain issuer", () => {
  assert.equal(entraAuthority("https://127.0.0.1:9443/t", "organizations"), "https://127.0.0.1:9443/t");
  assert.equal(entraAuthority("https://127.0.0.1:9443/t/v2.0/", "organizations"), "https://127.0.0.1:9443/t");
  assert.equal(entraAuthority("https://127.0.0.1:9443", "organizations"), "https://127.0.0.1:9443/organizations");
  assert.throws(() => entraAuthority("http://127.0.0.1:9400/t", "x"), /https/);
  assert.throws(() => entraAuthority("https://h/a/b", "x"), /one tenant/);
});

test("errors map onto the contract's codes", () => {
  const code = (e) => contract.classify(e).slice(0, 2).join(" ");
  assert.equal(code(contract.notSignedIn()), "401 not_signed_in");
  assert.equal(code(new contract.StoreError("redis", new Error("offline"))), "503 store_unavailable");
  assert.equal(code(new contract.IdpCallError("unavailable", "x")), "503 idp_unavailable");
  assert.equal(code(new contract.IdpCallError("refused", "x")), "401 signin_required");
  assert.equal(code(new contract.IdpCallError("bad_answer", "x")), "502 idp_error");
  assert.equal(code(new msal.InteractionRequiredAuthError("invalid_grant")), "401 signin_required");
  assert.equal(code(new msal.InteractionRequiredAuthError("no_tokens_found")), "401 signin_required");
  assert.equal(code(new msal.ServerError("invalid_grant", "")), "401 signin_required");
  assert.equal(code(new msal.ServerError("temporarily_unavailable", "")), "503 idp_unavailable");
  assert.equal(code(new msal.ServerError("", "")), "503 idp_unavailable"); // MSAL's own throttling
  assert.equal(code(new msal.ServerError("server_error", "")), "502 idp_error");
  assert.equal(code(new msal.ClientAuthError("network_error")), "503 idp_unavailable");
  assert.equal(code(new msal.ClientAuthError("state_mismatch")), "400 bad_request");
});

test("metrics say how many accounts an in-process token cache holds, beside its entries", () => {
  const { Metrics } = require("../metrics");
  const text = new Metrics("app-1").render(
    [
      { store: "memory", entries: 3 },
      { store: "instance_token_cache", entries: 11, accounts: 2 },
    ],
    0,
  );
  assert.match(text, /^app_store_entries\{instance="app-1",store="memory"\} 3$/m);
  assert.match(text, /^app_store_entries\{instance="app-1",store="instance_token_cache"\} 11$/m);
  assert.match(text, /^app_token_cache_accounts\{instance="app-1"\} 2$/m);
  // A store without an in-process cache says nothing of accounts.
  const plain = new Metrics("app-1").render([{ store: "postgres", entries: 5, bytes: 100 }], 0);
  assert.doesNotMatch(plain, /app_token_cache_accounts/);
});
