#!/usr/bin/env bash
# The cargo lambda round trip, as the README shows it: `cargo lambda watch` serves both
# functions; `cargo lambda invoke` has the batch function fold the seed's two log lines into a
# fresh store, then sends the committed API Gateway events to the API function and checks that
# it answers the seed's sample response. Installs cargo-lambda (PyPI, with zig) into
# .venv-lambda when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-lambda
if [ ! -x "$VENV/bin/cargo-lambda" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q cargo-lambda==1.9.2
fi
export PATH="$PWD/$VENV/bin:$PATH"

work=$(mktemp -d)
watch_pid=
cleanup() {
  if [ -n "$watch_pid" ]; then kill -- "-$watch_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Built ahead, so that no invoke waits on the compiler. The workspace-hack crate gives every
# build of the workspace the same dependency features, so after the Rust tests this compiles
# nothing (the script says so below if `cargo lambda watch` ever has to compile something).
cargo build --locked -q --bin srctraffic-api --bin srctraffic-batch
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
setsid cargo lambda watch --ignore-changes -A 127.0.0.1 -P "$port" \
  --env-var "SRCTRAFFIC_STORE=$work/store,SRCTRAFFIC_AUTH=off,SRCTRAFFIC_NOW=2019-12-11T00:00:00Z,RUST_LOG=${RUST_LOG:-info}" \
  >"$work/watch.log" 2>&1 &
watch_pid=$!
for _ in $(seq 1 600); do
  grep -q "starting Runtime server" "$work/watch.log" && break
  kill -0 "$watch_pid" 2>/dev/null || { cat "$work/watch.log"; exit 1; }
  sleep 0.1
done

invoke() {
  cargo lambda invoke "$1" -A 127.0.0.1 -P "$port" --output-format json "${@:2}"
}
passed=0
failed=0
# check NAME EXPR FILE: EXPR is Python over `out` (the parsed answer), `body(out)` (its body as
# a tree of JSON or XML) and `seed` / `seed_xml` (the seed's sample responses), all without the
# RequestId.
check() {
  if python3 -c '
import json, sys
import xml.etree.ElementTree as ET
out = json.load(open(sys.argv[1]))
def tree(e):
    kids = [(k.tag, tree(k)) for k in e if k.tag != "RequestId"]
    return kids if kids else (e.text or "").strip()
def parse(text):
    if text.lstrip().startswith("<"):
        return tree(ET.fromstring(text))
    doc = json.loads(text)
    doc.pop("RequestId", None)
    return doc
data = "functions/srctraffic-api/tests/data/"
seed = parse(open(data + "seed_response.json").read())
seed_xml = parse(open(data + "seed_response.xml").read())
def body(o):
    return parse(o["body"])
sys.exit(0 if eval(sys.argv[2]) else 1)
' "$3" "$2" 2>/dev/null; then
    passed=$((passed + 1))
    echo "ok   $1"
  else
    failed=$((failed + 1))
    echo "FAIL $1: $(cat "$3")"
  fi
}

# expect NAME FUNCTION EXPR INVOKE-ARGS...: invokes FUNCTION and checks its answer.
n=0
expect() {
  n=$((n + 1))
  invoke "$2" "${@:4}" >"$work/$n.json" || true
  check "$1" "$3" "$work/$n.json"
}

batch_event="{\"inputs\": [\"$PWD/functions/srctraffic-api/events/seed-logs.csv\"]}"
expect "batch function folds the seed's log lines" srctraffic-batch \
  '"1 read, 0 already committed" in out["summary"] and "3 read, 2 counted" in out["summary"]' \
  --data-ascii "$batch_event"
# The HTTP API event asks for JSON; the REST one sends no Accept, so it gets the default, XML.
expect "HTTP API event answers the seed's JSON response" srctraffic-api \
  'out["statusCode"] == 200 and body(out) == seed' \
  --data-file functions/srctraffic-api/events/seed-http-api.json
expect "REST API event answers the seed's XML response" srctraffic-api \
  'out["statusCode"] == 200 and body(out) == seed_xml' \
  --data-file functions/srctraffic-api/events/seed-rest-api.json
expect "batch function replayed commits nothing twice" srctraffic-batch \
  '"0 read, 1 already committed" in out["summary"]' \
  --data-ascii "$batch_event"
expect "the answer after the replay is unchanged" srctraffic-api \
  'out["statusCode"] == 200 and body(out) == seed' \
  --data-file functions/srctraffic-api/events/seed-http-api.json

grep -o "first answer [0-9.]* ms after start" "$work/watch.log" | sed 's/^/cold start under cargo lambda watch: /' || true
compiled=$(grep -c "Compiling" "$work/watch.log" || true)
if [ "$compiled" -gt 0 ]; then
  echo "note: cargo lambda watch compiled $compiled crates the build above did not cover"
fi
echo "cargo lambda: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  sed 's/^/watch: /' "$work/watch.log" | tail -40
  exit 1
fi
