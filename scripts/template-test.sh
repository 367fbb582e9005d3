#!/usr/bin/env bash
# The SAM template: cfn-lint clean, and the checks cfn-lint does not make (runtime, architectures,
# cargo-lambda binaries, schedule expressions). Each check is then shown to fail on a copy with a
# planted error, so a green run means something.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-tools
if ! "$VENV/bin/cfn-lint" --version >/dev/null 2>&1; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q cfn-lint
fi
passed=0; failed=0
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
bad()  { failed=$((failed + 1)); echo "FAIL $1"; }
check() { "$VENV/bin/cfn-lint" "$1" && "$VENV/bin/python" scripts/check_template.py "$1"; }

if check template.yaml; then ok "template.yaml passes cfn-lint and the extra checks"; else bad "template.yaml"; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
plant() { # NAME SED-EXPRESSION: the planted copy must fail
  sed "$2" template.yaml > "$tmp/$1.yaml"
  if cmp -s template.yaml "$tmp/$1.yaml"; then bad "$1: the plant did not change the template"; return; fi
  if check "$tmp/$1.yaml" > "$tmp/$1.out" 2>&1; then bad "$1: a planted error passed"; else ok "$1 is caught: $(grep -m1 -E 'template:|[EWI][0-9]{4}' "$tmp/$1.out")"; fi
}
plant old-runtime 's/Runtime: provided.al2023/Runtime: provided.al2/'
plant x86 's/Architectures: \[arm64\]/Architectures: [x86_64]/'
plant bad-cron 's/Default: cron(15 0 \* \* ? \*)/Default: cron(15 0 * * * *)/'
plant missing-binary 's/Binary: srctraffic-batch/Binary: srctraffic-nightly/'
plant cfn-lint-type 's/MemorySize: 3008/MemorySize: plenty/'
plant short-visibility 's/VisibilityTimeout: 5400/VisibilityTimeout: 900/'
plant guard-per-instance 's/SRCTRAFFIC_GUARD: dynamodb/SRCTRAFFIC_GUARD: local/'
plant guard-broad-policy 's/- dynamodb:UpdateItem/- dynamodb:*/'
plant guard-no-ttl 's/AttributeName: expires/AttributeName: expiry/'
plant console-on-by-default 's/    Default: "off"/    Default: "on"/'
plant console-unrouted 's|            Path: /console|            Path: /console/page|'
echo "template: $passed passed, $failed failed"
[ "$failed" = 0 ]
