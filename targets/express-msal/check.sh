#!/usr/bin/env bash
# A quick self-check by hand: starts two instances of one option against an
# IdP and stores that are already running, signs a browser in with a curl
# cookie jar (following the redirects through the mock IdP), and walks the
# contract: /profile twice (the second from cache), /data twice, the cart,
# a hop to the second instance (options 2-4 keep the session, option1
# answers 401), logout (the old cookie gets 401 on both instances).
#
# usage: check.sh OPTION IDP_AUTHORITY CA_FILE [REDIS_URL] [DATABASE_URL]
#   e.g. check.sh option4 https://127.0.0.1:19443/<tenant> /tmp/express-ca.pem \
#          redis://127.0.0.1:6379 postgres://postgres@127.0.0.1:5432/postgres
# Environment: IDP_API_URL (default {authority's origin}/api/me),
# PORT_A / PORT_B (default 18181 / 18182), LOGIN_USER (default alice).
# The IdP's access tokens must live longer than 300 s (MSAL Node renews any
# token that expires within 5 minutes, so shorter ones are never served from
# cache): start the mock IdP with --access-token-lifetime 600 or more.
# Prints one line per check and "N passed, M failed"; exits non-zero on a failure.
# Its keys and rows (namespace check-OPTION-PID) are removed at the end.

set -u
cd "$(dirname "$0")"

option=${1:?usage: check.sh OPTION IDP_AUTHORITY CA_FILE [REDIS_URL] [DATABASE_URL]}
authority=${2:?IDP_AUTHORITY, e.g. https://127.0.0.1:19443/<tenant>}
ca_file=${3:?CA_FILE: the CA certificate the mock IdP wrote with --ca-file}
redis_url=${4:-redis://127.0.0.1:6379}
database_url=${5:-postgres://postgres@127.0.0.1:5432/postgres}
origin=$(node -e 'console.log(new URL(process.argv[1]).origin)' "$authority")
api_url=${IDP_API_URL:-$origin/api/me}
port_a=${PORT_A:-18181}
port_b=${PORT_B:-18182}
user=${LOGIN_USER:-alice}
namespace="check-$option-$$"
work=$(mktemp -d)
jar="$work/jar"
passed=0
failed=0
pids=()

[ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  # This run's keys and rows only (the servers are shared).
  NAMESPACE=$namespace REDIS_URL=$redis_url DATABASE_URL=$database_url OPTION=$option node -e '
    const { createClient } = require("redis"); const { Pool } = require("pg");
    const { sessionTable } = require("./stores"); const ns = process.env.NAMESPACE;
    (async () => {
      if (process.env.OPTION === "option1") return;
      const pool = new Pool({ connectionString: process.env.DATABASE_URL });
      await pool.query("DELETE FROM express_msal_kv WHERE ns = $1", [ns]).catch(() => {});
      await pool.query(`DROP TABLE IF EXISTS "${sessionTable(ns)}"`).catch(() => {});
      await pool.end();
      if (process.env.OPTION !== "option4") return;
      const redis = createClient({ url: process.env.REDIS_URL }); await redis.connect();
      for await (const keys of redis.scanIterator({ MATCH: `${ns}:*`, COUNT: 1000 })) if (keys.length) await redis.del(keys);
      await redis.quit();
    })().catch((e) => console.error("cleanup:", e.message));'
  rm -rf "$work"
}
trap cleanup EXIT

# json FILE PATH: a field of a JSON file ("" when absent), e.g. json f api.jti
json() {
  node -e '
    let v = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    for (const k of process.argv[2].split(".")) v = v == null ? undefined : v[k];
    process.stdout.write(v === undefined || v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
  ' "$1" "$2" 2>/dev/null
}

check() { # check NAME EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then
    passed=$((passed + 1)); echo "ok - $1"
  else
    failed=$((failed + 1)); echo "not ok - $1: expected '$2', got '$3'"
  fi
}

# get NAME URL [curl args...]: body in $work/NAME.json, headers in $work/NAME.h, status printed
get() {
  local name=$1 url=$2; shift 2
  curl -s -o "$work/$name.json" -D "$work/$name.h" -w '%{http_code}' -b "$jar" -c "$jar" "$@" "$url"
}
header() { grep -i "^$2:" "$work/$1.h" | tail -1 | cut -d' ' -f2- | tr -d '\r'; }

start() { # start PORT INSTANCE
  PORT=$1 INSTANCE_ID=$2 OPTION=$option IDP_AUTHORITY=$authority IDP_API_URL=$api_url \
    NODE_EXTRA_CA_CERTS=$ca_file REDIS_URL=$redis_url DATABASE_URL=$database_url \
    NAMESPACE=$namespace ENCRYPTION_SECRET=check-secret SESSION_SECRET=check-secret \
    node server.js >"$work/$2.log" 2>&1 &
  pids+=($!)
}

start "$port_a" check-a
start "$port_b" check-b
for port in "$port_a" "$port_b"; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
  done
done
check "instance a is up" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port_a/healthz")"
check "instance b is up" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port_b/healthz")"

a="http://127.0.0.1:$port_a"
b="http://127.0.0.1:$port_b"

# Sign-in: /login -> IdP authorize (login_hint, no form) -> /auth/callback -> /
status=$(get signin "$a/login?login_hint=$user" -L --cacert "$ca_file")
check "sign-in ends on / with 200" 200 "$status"
check "signed in as $user" "true $user" "$(json "$work/signin.json" signed_in) $(json "$work/signin.json" user)"
check "x-instance names instance a" check-a "$(header signin x-instance)"
check "x-session-version is set" yes "$([ -n "$(header signin x-session-version)" ] && echo yes || echo no)"

get profile1 "$a/profile" >/dev/null
get profile2 "$a/profile" >/dev/null
check "/profile answers the user" "$user" "$(json "$work/profile1.json" user)"
check "/profile echo has sub and sid" yes "$([ -n "$(json "$work/profile1.json" api.sub)" ] && [ -n "$(json "$work/profile1.json" api.sid)" ] && echo yes || echo no)"
check "second /profile is from cache" cache "$(json "$work/profile2.json" token_source)"
check "second /profile uses the same token" "$(json "$work/profile1.json" api.jti)" "$(json "$work/profile2.json" api.jti)"

get data1 "$a/data/r1" >/dev/null
get data2 "$a/data/r1" >/dev/null
check "first /data/r1 redeems the refresh token" refresh "$(json "$work/data1.json" token_source)"
check "/data/r1 names resource and scopes" "r1|api://mock-api/data.read api://mock-api/data.write" \
  "$(json "$work/data1.json" resource)|$(json "$work/data1.json" scopes)"
check "/data/r1 token has those scopes" "data.read data.write" "$(json "$work/data1.json" api.scp)"
check "second /data/r1 is from cache" cache "$(json "$work/data2.json" token_source)"

item="item-$$-1"
get cartw "$a/cart" -H 'content-type: application/json' -d "{\"item\":\"$item\"}" >/dev/null
get cartr "$a/cart" >/dev/null
check "POST /cart answers the item" "[\"$item\"]" "$(json "$work/cartw.json" items)"
check "GET /cart reads it back" "[\"$item\"]" "$(json "$work/cartr.json" items)"
check "cart version is the session version" "$(json "$work/cartw.json" version)" "$(header cartw x-session-version)"

# The hop: the same cookie on instance b.
hop=$(get hop "$b/profile")
if [ "$option" == option1 ]; then
  check "hop to b: option1's session is per process (401)" "401 not_signed_in" "$hop $(json "$work/hop.json" error)"
else
  check "hop to b keeps the session" "200 $user" "$hop $(json "$work/hop.json" user)"
  check "hop to b answers from b" check-b "$(header hop x-instance)"
  check "hop to b finds the token in the cache" cache "$(json "$work/hop.json" token_source)"
  get hopcart "$b/cart" >/dev/null
  check "hop to b reads the cart" "[\"$item\"]" "$(json "$work/hopcart.json" items)"
fi

cp "$jar" "$work/old-jar"
status=$(get logout "$a/logout")
check "logout answers signed_out" "200 true" "$status $(json "$work/logout.json" signed_out)"
check "logout ended the IdP session" true "$(json "$work/logout.json" idp_session_ended)"
jar="$work/old-jar" # the cookie from before logout
check "old cookie after logout: 401 on a" 401 "$(get after_a "$a/profile")"
check "old cookie after logout: 401 on b" 401 "$(get after_b "$b/profile")"
check "old cookie after logout: cart 401 on b" 401 "$(get after_cart "$b/cart")"

metrics=$(curl -s "$a/metrics")
check "/metrics has RSS" yes "$(grep -q '^app_process_resident_memory_bytes{instance="check-a"}' <<<"$metrics" && echo yes || echo no)"
check "/metrics counts the code exchange" yes "$(grep -q 'call="authorization_code",outcome="ok"} 1' <<<"$metrics" && echo yes || echo no)"

if [ "$failed" -gt 0 ]; then
  echo "--- instance logs"; tail -n 20 "$work"/check-*.log
fi
echo "$option: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
