# Sourced by the test scripts. start_api DIR [ARGS...] starts the debug `srctraffic-api serve` on
# a free port of 127.0.0.1 over DIR/store, signing on with DIR/creds.json, the data clock at
# 2019-12-11T00:00:00Z, and sets $server (its pid, for the caller's cleanup) and $addr.
start_api() {
  local dir=$1
  shift
  RUST_LOG=warn target/debug/srctraffic-api serve --listen 127.0.0.1:0 --store "$dir/store" \
    --credentials "$dir/creds.json" --now 2019-12-11T00:00:00Z "$@" > "$dir/out" 2> "$dir/err" &
  server=$!
  for _ in $(seq 300); do grep -q listening "$dir/out" && break; sleep 0.1; done
  addr=$(sed -n 's|listening on http://||p' "$dir/out")
  [ -n "$addr" ] || { cat "$dir/err"; return 1; }
}
