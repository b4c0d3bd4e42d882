#!/usr/bin/env python3
"""MSAL Python (PyPI `msal`) against the mock IdP, as an app would use it.

Run by mock-idp/tests/msal_python.rs. Signs a user in with the authorization
code flow (PKCE, login_hint, the browser's redirect followed by `requests`),
acquires a token silently twice for a short-form scope and checks on the IdP's
/stats that neither made a token call, lets the access token expire and checks
the silent acquisition refreshes it, then signs out (end-session endpoint, then
remove_account) and checks the refresh token is dead.

Expiry without waiting: MSAL reads `time.time()`, the IdP its own clock. This
script moves both forward by the token's lifetime: its own by patching
`time.time`, the IdP's by printing `ADVANCE <secs>` on stdout and waiting for
the test to answer on stdin. Progress goes to stderr; the last stdout line is
`RESULT <json>`. Exit status 0: every check passed; 1: a check failed;
3: msal or requests is missing.

HTTPS trust comes from REQUESTS_CA_BUNDLE (the IdP's generated CA), as an app
would set it.
"""

import argparse
import json
import sys
import time
import urllib.parse

try:
    import msal
    import requests
except ImportError as missing:
    print(f"{missing}: install it with `python3 -m pip install msal==1.39.0`", file=sys.stderr)
    sys.exit(3)

_wall_clock = time.time
_offset_secs = 0


def _moved_clock():
    return _wall_clock() + _offset_secs


time.time = _moved_clock  # msal reads time.time() when it stores and finds tokens


class CheckFailed(Exception):
    pass


def check(condition, what):
    if not condition:
        raise CheckFailed(what)
    print(f"ok: {what.splitlines()[0]}", file=sys.stderr)


def advance(secs):
    """Moves this process's clock and the IdP's forward together."""
    global _offset_secs
    print(f"ADVANCE {secs}", flush=True)
    answer = sys.stdin.readline().strip()
    check(answer == "ADVANCED", f"the test moved the IdP's clock (answered {answer!r})")
    _offset_secs += secs


def token_calls(base):
    """The IdP's token-endpoint counters, flattened to {"grant/outcome": n}."""
    stats = requests.get(f"{base}/stats", timeout=10).json()
    return {
        f"{grant}/{outcome}": n
        for grant, outcomes in stats["token_calls"].items()
        for outcome, n in outcomes.items()
    }


def api_status(base, access_token):
    r = requests.get(f"{base}/api/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=10)
    return r.status_code, r.json()


def run(args):
    base = args.base.rstrip("/")
    scopes = [args.scope]
    if args.mode == "entra":
        # Entra ID's default (AAD) mode; a host that is not Microsoft's needs
        # instance discovery off (or validate_authority=False).
        authority = f"{base}/{args.tenant}"
        app = msal.ConfidentialClientApplication(
            args.client_id,
            client_credential=args.client_secret,
            authority=authority,
            instance_discovery=False,
        )
        discovery = f"{authority}/v2.0/.well-known/openid-configuration"
    else:
        # OIDC mode: MSAL Python wants an authority with a path, so it gets
        # the tenant issuer, whose discovery sits at {issuer}/.well-known/...
        authority = f"{base}/{args.tenant}/v2.0"
        app = msal.ConfidentialClientApplication(
            args.client_id, client_credential=args.client_secret, oidc_authority=authority
        )
        discovery = f"{authority}/.well-known/openid-configuration"
    result = {"mode": args.mode, "authority": authority, "token_sources": []}

    # Sign-in: the browser follows the authorization URL; the IdP signs the
    # login_hint user in and redirects to the app with a code.
    browser = requests.Session()
    flow = app.initiate_auth_code_flow(scopes, redirect_uri=args.redirect_uri, login_hint=args.user)
    check("code_challenge=" in flow["auth_uri"], "the authorization URL carries a PKCE challenge")
    page = browser.get(flow["auth_uri"], allow_redirects=False, timeout=10)
    location = page.headers.get("Location", "")
    check(page.status_code == 302 and location.startswith(args.redirect_uri),
          f"the IdP redirects back to the app ({page.status_code} {location} {page.text[:300]})")
    auth_response = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    signed_in = app.acquire_token_by_auth_code_flow(flow, auth_response)
    check("access_token" in signed_in, f"the code is redeemed: {signed_in}")
    result["id_token_iss"] = signed_in["id_token_claims"]["iss"]
    result["signed_in_scope"] = signed_in.get("scope")
    accounts = app.get_accounts(username=args.user)
    check(len(accounts) == 1, f"one account for {args.user} in MSAL's cache: {accounts}")
    account = accounts[0]

    # Silent acquisition for the short scope: from MSAL's cache, no token call.
    before = token_calls(base)
    for _ in range(2):
        silent = app.acquire_token_silent(scopes, account=account)
        check(silent is not None and "access_token" in silent, f"silent acquisition: {silent}")
        result["token_sources"].append(silent.get("token_source"))
    check(result["token_sources"] == ["cache", "cache"],
          f"both silent acquisitions come from the cache: {result['token_sources']}")
    check(token_calls(base) == before, f"no token call for them: {before} -> {token_calls(base)}")
    status, echo = api_status(base, silent["access_token"])
    check(status == 200 and echo.get("scp") == args.scope, f"the API takes the token: {status} {echo}")

    # Expiry: both clocks pass the token's lifetime; the IdP refuses the old
    # token, and MSAL refreshes silently.
    old_token = silent["access_token"]
    advance(args.lifetime + 1)
    status, echo = api_status(base, old_token)
    check(status == 401 and echo.get("error") == "invalid_token", f"the expired token is refused: {status} {echo}")
    before = token_calls(base)
    refreshed = app.acquire_token_silent(scopes, account=account)
    check(refreshed is not None and refreshed.get("token_source") == "identity_provider",
          f"after expiry the silent acquisition refreshes: {refreshed}")
    result["token_sources"].append(refreshed["token_source"])
    after = token_calls(base)
    check(after.get("refresh_token/ok", 0) == before.get("refresh_token/ok", 0) + 1,
          f"one refresh_token grant: {before} -> {after}")
    check(api_status(base, refreshed["access_token"])[0] == 200, "the API takes the refreshed token")
    again = app.acquire_token_silent(scopes, account=account)
    result["token_sources"].append(again and again.get("token_source"))
    check(again is not None and again.get("token_source") == "cache" and token_calls(base) == after,
          f"the refreshed token is cached under the short scope too: {again}")

    # Sign-out: the browser goes to the end-session endpoint discovery names,
    # the app forgets the account, and the IdP has revoked the refresh token.
    refresh_token = app.token_cache.find(msal.TokenCache.CredentialType.REFRESH_TOKEN)[0]["secret"]
    end_session = requests.get(discovery, timeout=10).json()["end_session_endpoint"]
    result["end_session_endpoint"] = end_session
    page = browser.get(end_session, allow_redirects=False, timeout=10, params={
        "id_token_hint": signed_in["id_token"],
        "post_logout_redirect_uri": "http://127.0.0.1:5555/",
        "state": "bye",
    })
    check(page.status_code == 302 and page.headers.get("Location") == "http://127.0.0.1:5555/?state=bye",
          f"the IdP signs out and redirects: {page.status_code} {page.headers.get('Location')} {page.text[:300]}")
    app.remove_account(account)
    check(app.get_accounts() == [], "the app forgot the account")
    check(app.acquire_token_silent(scopes, account=account) is None, "nothing silent is left")
    revoked = app.acquire_token_by_refresh_token(refresh_token, scopes)
    check(revoked.get("error") == "invalid_grant", f"the IdP revoked the refresh token: {revoked}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["entra", "oidc"], required=True)
    parser.add_argument("--base", required=True, help="the IdP's HTTPS URL, https://127.0.0.1:PORT")
    parser.add_argument("--tenant", required=True, help="common, organizations, consumers or the tenant id")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--user", default="alice")
    parser.add_argument("--scope", default="api.read")
    parser.add_argument("--redirect-uri", default="http://127.0.0.1:5555/auth/callback")
    parser.add_argument("--lifetime", type=int, required=True, help="the IdP's access-token lifetime, seconds")
    args = parser.parse_args()
    print(f"msal {msal.__version__}, {args.mode} mode", file=sys.stderr)
    try:
        result = run(args)
    except CheckFailed as failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        sys.exit(1)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
