#!/usr/bin/env bash
# Cold start of the API function (release build): process start to first answer, as the
# function logs it with its first answer ("first answer N ms after start"), for the seed's event.
#  - under a minimal runtime API (bench/fake_runtime.py), which hands the event over at once:
#    the function's own cold start;
#  - under `cargo lambda watch --release`, a fresh watch each time: what a developer sees, which
#    includes the emulator's own hand-off of the queued event.
#   bash bench/cold-start.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-7}
VENV=.venv-lambda
if [ ! -x "$VENV/bin/cargo-lambda" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q cargo-lambda==1.9.2
fi
export PATH="$PWD/$VENV/bin:$PATH"
cargo build --release --locked -q -p srctraffic-api -p srctraffic-batch
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/srctraffic-batch aggregate --store "$work/store" --now 2019-12-11T00:00:00Z \
  functions/srctraffic-api/events/seed-logs.csv >/dev/null
event=functions/srctraffic-api/events/seed-http-api.json
export SRCTRAFFIC_STORE="$work/store" SRCTRAFFIC_AUTH=off SRCTRAFFIC_NOW=2019-12-11T00:00:00Z
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
first_answer() { grep -o "first answer [0-9.]* ms" "$1" | grep -o "[0-9.]*" | head -1; }

direct=()
for _ in $(seq "$RUNS"); do
  port=$(free_port)
  python3 bench/fake_runtime.py "$event" "$port" >"$work/rt.out" &
  rt=$!
  until grep -q ready "$work/rt.out"; do sleep 0.02; done
  AWS_LAMBDA_RUNTIME_API="127.0.0.1:$port" AWS_LAMBDA_FUNCTION_NAME=srctraffic-api \
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 AWS_LAMBDA_FUNCTION_VERSION=1 \
    target/release/srctraffic-api 2>"$work/fn.log" &
  fn=$!
  wait "$rt"
  kill "$fn" 2>/dev/null || true
  wait "$fn" 2>/dev/null || true
  grep -q "^ok" "$work/rt.out" || { cat "$work/rt.out" "$work/fn.log"; exit 1; }
  direct+=("$(first_answer "$work/fn.log")")
done

watched=()
for _ in $(seq "$RUNS"); do
  port=$(free_port)
  setsid cargo lambda watch --release --ignore-changes -A 127.0.0.1 -P "$port" \
    --env-var "SRCTRAFFIC_STORE=$work/store,SRCTRAFFIC_AUTH=off,SRCTRAFFIC_NOW=2019-12-11T00:00:00Z" \
    >"$work/watch.log" 2>&1 &
  watch=$!
  until grep -q "starting Runtime server" "$work/watch.log"; do sleep 0.05; done
  cargo lambda invoke srctraffic-api -A 127.0.0.1 -P "$port" --data-file "$event" >/dev/null
  kill -- "-$watch" 2>/dev/null || true
  wait "$watch" 2>/dev/null || true
  watched+=("$(first_answer "$work/watch.log")")
done

python3 - "${direct[*]}" "${watched[*]}" <<'PY'
import statistics, sys
rows = [("minimal runtime API", sys.argv[1]), ("cargo lambda watch", sys.argv[2])]
print(f"{'cold start, process start to first answer':44} {'median ms':>10} {'min':>8} {'max':>8}  runs")
for name, values in rows:
    v = [float(x) for x in values.split()]
    print(f"{name:44} {statistics.median(v):10.1f} {min(v):8.1f} {max(v):8.1f}  {len(v)}")
PY
echo "release binary: $(stat -c %s target/release/srctraffic-api) bytes"
