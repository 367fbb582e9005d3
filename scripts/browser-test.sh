#!/usr/bin/env bash
# The console page in headless Chromium (Debian's chromium and chromium-driver, installed here
# when missing; selenium from PyPI into .venv-browser), against `srctraffic-api serve` with
# signing on over a day of generated logs. Screenshots are kept in target/browser-test/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/api-server.sh
if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium chromium-driver > /dev/null 2>&1 ||
    { apt-get update -q > /dev/null && apt-get install -y -q chromium chromium-driver > /dev/null; }
fi
VENV=.venv-browser
if ! "$VENV/bin/python" -c 'import selenium' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q selenium
fi
cargo build -q --locked -p srctraffic-api -p srctraffic-batch
tmp=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
target/debug/srctraffic-batch gen-logs --out "$tmp/logs" --day 2019-12-10 --domains 20 --rows 40000 \
  --files 4 --seed 21 --scheme-column > /dev/null
target/debug/srctraffic-batch aggregate --store "$tmp/store" --now 2019-12-11T00:00:00Z "$tmp/logs" > /dev/null
cat > "$tmp/creds.json" <<'JSON'
{"keys": [{"access_key_id": "tenant", "access_key_secret": "tenant-secret", "domains": ["*.example.com"]}]}
JSON
start_api "$tmp"
# The two busiest domains (gen-logs' Zipf law puts them first).
busiest=$(cut -d, -f1 "$tmp/logs.truth.csv" | sed 1d | sort | uniq -c | sort -rn | awk 'NR<=2 {print $2}')
a=$(echo "$busiest" | sed -n 1p)
b=$(echo "$busiest" | sed -n 2p)
"$VENV/bin/python" -W ignore functions/srctraffic-api/tests/browser/test_console.py "$addr" target/browser-test "$a" "$b"
