#!/usr/bin/env bash
# Drives `srctraffic-api serve` with the official Alibaba Cloud SDKs from PyPI (installed into
# .venv-sdk on first use), request signing on, over a store the batch fills.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/api-server.sh
VENV=.venv-sdk
if ! "$VENV/bin/python" -c 'import alibabacloud_cdn20180510, aliyunsdkcore, aliyunsdkcdn' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q alibabacloud-cdn20180510 aliyun-python-sdk-core aliyun-python-sdk-cdn
fi
cargo build -q --locked -p srctraffic-api -p srctraffic-batch
tmp=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
printf 'time,domain,bytes\n2019-12-10T20:00:10Z,example.com,100\n2019-12-10T20:01:10Z,Example.com,200\n2019-12-10T20:01:20Z,b.example.com,5\n2019-12-10T20:00:30Z,other.org,7\n' > "$tmp/logs.csv"
# A day of generated CSV with scheme and status, for the family's ground truth.
target/debug/srctraffic-batch gen-logs --out "$tmp/gen" --day 2019-12-10 --domains 20 --rows 20000 \
  --files 4 --seed 11 --scheme-column > /dev/null
target/debug/srctraffic-batch aggregate --store "$tmp/store" --now 2019-12-11T00:00:00Z "$tmp/logs.csv" "$tmp/gen" > /dev/null
cat > "$tmp/creds.json" <<'JSON'
{"keys": [
  {"access_key_id": "tenant", "access_key_secret": "tenant-secret", "domains": ["example.com", "*.example.com"]},
  {"access_key_id": "other", "access_key_secret": "other-secret", "domains": ["other.org"]}
]}
JSON
start_api "$tmp"
"$VENV/bin/python" -W ignore functions/srctraffic-api/tests/sdk/test_sdks.py "$addr"
"$VENV/bin/python" -W ignore functions/srctraffic-api/tests/sdk/test_family.py "$addr" "$tmp/gen.truth.measures.csv"
