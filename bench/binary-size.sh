#!/usr/bin/env bash
# The API function's release binary with aws-sdk-s3 / aws-config trimmed to what it uses (the
# workspace as committed) and with their default features (sigv4a, the legacy rustls client,
# SSO and process credentials). The default variant is built from a copy of the workspace with
# only those two dependency lines changed, in its own target directory.
#   bash bench/binary-size.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p srctraffic-api
trimmed=$(stat -c %s target/release/srctraffic-api)

copy=target/size-default/src
rm -rf "$copy"
mkdir -p "$copy"
git ls-files -z | xargs -0 cp --parents -t "$copy"
sed -i -E 's/^(aws-(config|sdk-s3)) = \{ version = "1", default-features = false, features = \[[^]]*\] \}/\1 = { version = "1", features = ["behavior-version-latest"] }/' "$copy/Cargo.toml"
grep -q '^aws-sdk-s3 = { version = "1", features = \["behavior-version-latest"\] }' "$copy/Cargo.toml" \
  || { echo "could not switch aws-sdk-s3 to its default features" >&2; exit 1; }
(cd "$copy" && cargo build --release -q -p srctraffic-api --target-dir ../target)
default=$(stat -c %s target/size-default/target/release/srctraffic-api)

printf '%-52s %12s\n' "srctraffic-api release binary (stripped, thin LTO)" "bytes"
printf '%-52s %12d\n' "aws-sdk-s3 + aws-config default features" "$default"
printf '%-52s %12d\n' "trimmed (behavior-version-latest, rt-tokio, https)" "$trimmed"
python3 -c "import sys; d, t = int(sys.argv[1]), int(sys.argv[2]); print(f'trimmed / default = {t / d:.3f} ({(d - t) / 2**20:.1f} MiB less)')" "$default" "$trimmed"
