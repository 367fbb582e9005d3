#!/usr/bin/env bash
# Two `srctraffic-api serve` processes sharing nonces and call rates through a real
# DynamoDB-compatible server on 127.0.0.1: moto's server, from PyPI (DynamoDB Local cannot be
# downloaded here), installed into .venv-moto on first use and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-moto
if ! "$VENV/bin/python" -c 'import moto.server, flask_cors' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'moto[server,dynamodb]'
fi
tmp=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" > "$tmp/out" 2>&1 &
server=$!
for _ in $(seq 300); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  kill -0 "$server" 2>/dev/null || { cat "$tmp/out"; exit 1; }
  sleep 0.1
done
SRCTRAFFIC_TEST_DYNAMODB="http://127.0.0.1:$port" \
  cargo test -q --locked -p srctraffic-api --test api shared_guard -- --ignored --nocapture
