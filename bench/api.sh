#!/usr/bin/env bash
# API benchmark over HTTP (docs/BENCH.md section 2): requests per second and p99 with wrk at 32
# connections against `srctraffic-api serve`, auth off and auth on (V1-signed requests made by
# bench/signed_requests.py, sent by bench/signed.lua), interleaved, three rounds of 8 s each;
# RSS before and after 100,000+ requests,
# cold start (exec to the first answered request, median of 20) and the release binary's size.
# The store is the batch's output for the benchmark's day (1,000 domains).
#   bash bench/api.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${BENCH_DIR:-target/bench-data}
ROWS=${ROWS:-10000000}
NOW=2019-12-11T00:00:00Z
cargo build --release --locked -p srctraffic-api -p srctraffic-batch
command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null
STORE="$DIR/api-store"
if [ ! -f "$STORE/meta/watermark" ]; then
  [ -d "$DIR/plain-$ROWS" ] || target/release/srctraffic-batch gen-logs --out "$DIR/plain-$ROWS" --domains 1000 --rows "$ROWS" --day 2019-12-10 --seed 7
  target/release/srctraffic-batch aggregate --store "$STORE" --now $NOW "$DIR/plain-$ROWS" > /dev/null
fi
domain=$(target/release/srctraffic-batch export --store "$STORE" | sed -n 2p | cut -d, -f1)
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
# serve NAME ARGS...: starts `srctraffic-api serve` on a free port, sets $addr.
serve() {
  local name=$1
  shift
  target/release/srctraffic-api serve --listen 127.0.0.1:0 --store "$STORE" --now $NOW "$@" > "$work/$name.out" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 100); do grep -q listening "$work/$name.out" && break; sleep 0.05; done
  addr=$(sed -n 's|listening on http://||p' "$work/$name.out")
}
query="Action=DescribeDomainRealTimeSrcTrafficData&DomainName=$domain&StartTime=2019-12-10T00:00:00Z&EndTime=2019-12-11T00:00:00Z&Format=JSON"
# Signed requests: 2,000 keys in turn, a fresh nonce each; made again before every signed round.
python3 bench/signed_requests.py "$work/signed" 2 1 "$domain"
serve off --auth off
off_addr=$addr
off_pid=${pids[-1]}
serve on --auth on --credentials "$work/signed.creds.json"
on_addr=$addr
on_pid=${pids[-1]}
url="http://$off_addr/?$query"
curl -sf "$url" > /dev/null
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
before=$(rss "$off_pid")
before_on=$(rss "$on_pid")
# Interleaved rounds, auth off then auth on, after a warm-up of each.
wrk -t2 -c32 -d2s "$url" > /dev/null
python3 bench/signed_requests.py "$work/signed" 2 40000 "$domain"
wrk -t2 -c32 -d2s -s bench/signed.lua "http://$on_addr" -- "$work/signed" > /dev/null
for round in 1 2 3; do
  wrk -t2 -c32 -d8s --latency "$url" > "$work/off.$round.txt"
  python3 bench/signed_requests.py "$work/signed" 2 100000 "$domain"
  wrk -t2 -c32 -d8s --latency -s bench/signed.lua "http://$on_addr" -- "$work/signed" > "$work/on.$round.txt"
done
after=$(rss "$off_pid")
after_on=$(rss "$on_pid")
cp "$work"/off.*.txt "$work"/on.*.txt "$DIR/" 2>/dev/null || true
python3 - "$work" "$before" "$after" "$before_on" "$after_on" <<'PY'
import re, statistics, sys
work, before, after, before_on, after_on = sys.argv[1], *map(int, sys.argv[2:])
def parse(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
    p99_ms = float(p99.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return rps, p99_ms, requests, int(bad.group(1)) if bad else 0
rows = {}
for mode in ("off", "on"):
    runs = [parse(f"{work}/{mode}.{r}.txt") for r in (1, 2, 3)]
    rows[mode] = runs
print("| wrk -t2 -c32, 24 h / 1 domain | req/s (median of 3) | p99 ms (median) | requests | non-2xx |")
print("| --- | --- | --- | --- | --- |")
for mode, runs in rows.items():
    print(f"| auth {mode} | {statistics.median(r[0] for r in runs):,.0f} | "
          f"{statistics.median(r[1] for r in runs):.2f} | {sum(r[2] for r in runs):,} | {sum(r[3] for r in runs)} |")
off = statistics.median(r[0] for r in rows["off"])
on = statistics.median(r[0] for r in rows["on"])
print(f"auth on / auth off throughput: {on / off:.2f}")
print(f"RSS auth off: {before} KiB before, {after} KiB after {sum(r[2] for r in rows['off']) + 1:,}+ requests")
print(f"RSS auth on:  {before_on} KiB before, {after_on} KiB after {sum(r[2] for r in rows['on']):,}+ requests")
if any(r[3] for runs in rows.values() for r in runs):
    sys.exit("some requests were refused: the measurement is not valid")
PY

python3 - "$STORE" "$url" <<'PY'
import socket, statistics, subprocess, sys, time, urllib.parse
store, url = sys.argv[1], sys.argv[2]
u = urllib.parse.urlsplit(url)
times = []
for i in range(20):
    port = 19000 + i
    t0 = time.perf_counter()
    p = subprocess.Popen(["target/release/srctraffic-api", "serve", "--listen", f"127.0.0.1:{port}",
                          "--store", store, "--auth", "off", "--now", "2019-12-11T00:00:00Z"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.sendall(f"GET /?{u.query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            if s.recv(12).startswith(b"HTTP/1.1 200"):
                times.append(time.perf_counter() - t0)
                s.close()
                break
            s.close()
        except OSError:
            time.sleep(0.0005)
    p.kill(); p.wait()
print(f"cold start (exec to first 200), median of 20: {statistics.median(times) * 1000:.1f} ms (target < 20)")
PY
echo "release binary: $(stat -c %s target/release/srctraffic-api) bytes"
