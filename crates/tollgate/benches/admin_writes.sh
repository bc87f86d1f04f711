#!/usr/bin/env bash
# Admin-API write costs on a 1,000,000-key store (docs/PERFORMANCE.md,
# "Changes on a running proxy"). Release build, loopback only, bounded:
#
#   cargo build --release -p tollgate && bash crates/tollgate/benches/admin_writes.sh
#
# Needs curl, openssl, awk and bc. Works in a temporary directory it removes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BIN=${TOLLGATE_BIN:-$ROOT/target/release/tollgate}
W=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$W"' EXIT
SERVER=
D=$W/demo

# Import files: 1M and 100k keys of 40 hex digits.
gen() { awk -v n="$1" -v off="$2" 'BEGIN { printf "{\"data\":["; for (i = 0; i < n; i++) { if (i) printf ","; printf "{\"key\":\"%040x\",\"value\":\"revoked\"}", i + off } print "]}" }'; }
gen 1000000 0 > "$W/revoked-1m.json"
gen 100000 5000000 > "$W/revoked-100k.json"

# A dev PKI and the revocation function, from the demo.
"$BIN" demo --dir "$D" --listen 127.0.0.1:18443 >/dev/null 2>&1 &
DEMO=$!
sleep 4
kill $DEMO; wait $DEMO 2>/dev/null || true
openssl rand -hex 32 > "$D/admin.token"
cat > "$D/perf.toml" <<TOML
[functions.revocation]
wasm = "revocation.wasm"
kvs = ["revoked"]
[kvs.revoked]
import = "$W/revoked-1m.json"
max_store_bytes = 134217728
[state]
dir = "$W/state"
[watch]
enabled = false
[admin]
address = "127.0.0.1:19901"
token_file = "admin.token"
max_body_bytes = 134217728
[logs]
connection = "off"
access = "off"
[[listener]]
name = "perf"
address = "127.0.0.1:18443"
[[listener.certificate]]
names = ["localhost"]
cert = "server.pem"
key = "server.key"
[listener.mtls]
mode = "required"
trust_store = "ca.pem"
[listener.function]
name = "revocation"
[listener.origin]
url = "http://127.0.0.1:9"
TOML

start() {
    local t0
    t0=$(date +%s.%N)
    "$BIN" serve --config "$D/perf.toml" 2>"$W/serve.err" &
    SERVER=$!
    until grep -q "tollgate: listener" "$W/serve.err" 2>/dev/null; do sleep 0.05; done
    echo "startup: $(echo "$(date +%s.%N) - $t0" | bc) s"
}
export TOLLGATE_ADMIN=http://127.0.0.1:19901
TOLLGATE_ADMIN_TOKEN=$(cat "$D/admin.token")
export TOLLGATE_ADMIN_TOKEN
AUTH="Authorization: Bearer $TOLLGATE_ADMIN_TOKEN"
etag() { curl -s -o /dev/null -w '%header{etag}' -H "$AUTH" $TOLLGATE_ADMIN/kvs/revoked; }
write() { # METHOD PATH BODY-ARGS...
    local method=$1 path=$2
    shift 2
    curl -s -o /dev/null -w '%{time_total} s (HTTP %{http_code})\n' -X "$method" -H "$AUTH" \
        -H "If-Match: $(etag)" -H 'Content-Type: application/json' "$@" "$TOLLGATE_ADMIN$path"
}

echo "== first start: seeds 1,000,000 keys into the state"; start
echo "== PutKey on the 1M store (10 calls)"
for i in $(seq 1 10); do write PUT /kvs/revoked/keys/ffff$i -d '{"Value":"x"}'; done
echo "== UpdateKeys with 1,000 puts"
awk 'BEGIN { printf "{\"Puts\":["; for (i = 0; i < 1000; i++) { if (i) printf ","; printf "{\"Key\":\"aa%04d\",\"Value\":\"x\"}", i } print "]}" }' > "$W/batch.json"
write POST /kvs/revoked/keys --data-binary @"$W/batch.json"
echo "== import of 100,000 keys (replaces the store)"
write PUT /kvs/revoked --data-binary @"$W/revoked-100k.json"
echo "== PutKey on the 100k store (5 calls)"
for i in $(seq 1 5); do write PUT /kvs/revoked/keys/eeee$i -d '{"Value":"x"}'; done
echo "== import of 1,000,000 keys"
write PUT /kvs/revoked --data-binary @"$W/revoked-1m.json"
echo "== function upload + publish"
"$BIN" functions upload revocation "$D/revocation.wasm" --comment again >/dev/null
t0=$(date +%s.%N); "$BIN" functions publish revocation >/dev/null
echo "publish: $(echo "$(date +%s.%N) - $t0" | bc) s"
kill -9 $SERVER; wait $SERVER 2>/dev/null || true
rm -f "$W/serve.err"
echo "== restart after kill -9: 1,000,000 keys from the state"; start
echo "state file: $(du -h "$W/state/state.redb" | cut -f1)"
