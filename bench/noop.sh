#!/usr/bin/env bash
# A no-op run over many committed files: 10,000 one-line files are committed, then the same
# directory is run again. The stat cache skips every file without reading it: the second run
# reads and hashes 0 bytes. Prints both wall times.
#
#   bash bench/noop.sh            # FILES=100000 for more
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${FILES:-10000}
DIR=${BENCH_DIR:-target/bench-data}/noop
BIN=target/release/srctraffic-batch
cargo build --release --locked -p srctraffic-batch
rm -rf "$DIR"; mkdir -p "$DIR/logs"
python3 - "$DIR/logs" "$FILES" <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(f"{d}/{i:06}.csv", "w") as f:
        f.write(f"time,domain,bytes\n2019-12-10T10:00:00Z,a.example.com,{i + 1}\n")
PY
run() { /usr/bin/time -f "%e s, peak RSS %M KB" "$BIN" aggregate --now 2019-12-11T00:00:00Z --store "$DIR/store" "$@" "$DIR/logs" | grep -E "^files|unchanged"; }
echo "first run (commits $FILES files):"; run
echo "second run (nothing new):"; run
echo "with --verify (rehashes all):"; run --verify
rm -rf "$DIR"
