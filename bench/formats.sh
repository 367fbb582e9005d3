#!/usr/bin/env bash
# Formats benchmark: for each real log format, `gen-logs --format F` writes ROWS lines (plain,
# 24 files), then our aggregate (two threads and one) and DuckDB doing the same per-minute sum
# with the same origin rule (bench/peers/q_formats_duckdb.py) run interleaved, page cache warm.
# Every output is checked against the ground truth; prints medians, ratios, MB/s per core and
# peak RSS.
#
#   bash bench/formats.sh                     # 10M lines a format, 3 rounds
#   ROWS=2000000 FORMATS="alibaba nginx" bash bench/formats.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000}
DOMAINS=${DOMAINS:-1000}
ROUNDS=${ROUNDS:-3}
FORMATS=${FORMATS:-"cloudfront alibaba cloudflare jsonl nginx"}
DIR=${BENCH_DIR:-target/bench-data}/formats
NOW=2019-12-11T00:00:00Z
BIN=target/release/srctraffic-batch
cargo build --release -p srctraffic-batch --locked
if [ ! -x .venv-peers/bin/python ] || ! .venv-peers/bin/python -c 'import duckdb' 2>/dev/null; then
  python3 -m venv .venv-peers
  .venv-peers/bin/pip install -q duckdb chdb
fi
mkdir -p "$DIR"
OUT="$DIR/out"; rm -rf "$OUT"; mkdir -p "$OUT"
RESULTS="$OUT/results.txt"; : > "$RESULTS"
NGINX_FORMAT=$($BIN gen-logs --out "$OUT/probe" --domains 1 --rows 1 --files 1 --day 2019-12-10 --format nginx | sed -n "s/^read with: --format nginx --nginx-log-format '\(.*\)'$/\1/p")
JSONL_FLAGS=$($BIN gen-logs --out "$OUT/probe" --domains 1 --rows 1 --files 1 --day 2019-12-10 --format jsonl | sed -n 's/^read with: //p')
rm -rf "$OUT/probe" "$OUT"/probe.truth*

# run NAME CMD...: appends "NAME wall_s rss_kb" to the results file. The format's files are
# read into the page cache again first, for every engine alike (see bench/batch.sh: this
# machine drops file pages left unused for a while).
run() {
  local name=$1; shift
  cat "$data"/* > /dev/null
  /usr/bin/time -f "%e %M" -o "$OUT/time.txt" "$@" > /dev/null 2> "$OUT/err.txt" || { cat "$OUT/err.txt"; exit 1; }
  echo "$name $(cat "$OUT/time.txt")" >> "$RESULTS"
}
n=0
for f in $FORMATS; do
  data="$DIR/$f-$ROWS"
  if [ ! -f "$data.done" ]; then
    rm -rf "$data"
    $BIN gen-logs --out "$data" --domains "$DOMAINS" --rows "$ROWS" --day 2019-12-10 --seed 7 --format "$f" > /dev/null
    touch "$data.done"
  fi
  case $f in
    nginx) flags=(--format nginx --nginx-log-format "$NGINX_FORMAT") ;;
    jsonl) read -r -a flags <<< "$JSONL_FLAGS" ;;
    *) flags=() ;;
  esac
  echo "$f $(du -sm --apparent-size "$data" | cut -f1)" >> "$OUT/sizes.txt"
  cat "$data"/* > /dev/null
  for i in $(seq 0 "$ROUNDS"); do  # round 0 is the warm-up and is dropped
    n=$((n + 1))
    run "$f-ours" $BIN aggregate --store "$OUT/s-$n" --now $NOW "${flags[@]}" "$data"
    last="$OUT/s-$n"
    run "$f-ours-1thread" $BIN aggregate --threads 1 --store "$OUT/t-$n" --now $NOW "${flags[@]}" "$data"
    run "$f-duckdb" .venv-peers/bin/python bench/peers/q_formats_duckdb.py "$f" "$data/*" "$OUT/$f-duckdb.csv"
    if [ "$i" = 0 ]; then sed -i "/^$f-/d" "$RESULTS"; fi
    rm -rf "$OUT/t-$n"
  done
  $BIN export --store "$last" > "$OUT/$f-ours.csv"
  rm -rf "$OUT"/s-*
  python3 bench/compare.py "$data.truth.csv" "$OUT/$f-ours.csv" "$OUT/$f-duckdb.csv"
done

python3 - "$RESULTS" "$OUT/sizes.txt" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, wall, rss = line.split()
    rows.setdefault(name, []).append((float(wall), int(rss)))
sizes = dict(l.split() for l in open(sys.argv[2]))
med = lambda k: statistics.median(w for w, _ in rows[k])
rss = lambda k: max(r for _, r in rows[k]) / 1024
print(f"\n{len(next(iter(rows.values())))} interleaved rounds, median wall time, 2 cores")
print("| format | MB | ours s | ours 1 thread s | DuckDB s | DuckDB / ours | ours MB/s per core (1 thread) | ours peak RSS MiB | DuckDB peak RSS MiB |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for f, mb in sizes.items():
    mb = float(mb)
    o, o1, d = med(f"{f}-ours"), med(f"{f}-ours-1thread"), med(f"{f}-duckdb")
    print(f"| {f} | {mb:.0f} | {o:.2f} | {o1:.2f} | {d:.2f} | {d / o:.2f}x | {mb / o1:.0f} | {rss(f + '-ours'):.0f} | {rss(f + '-duckdb'):.0f} |")
PY
