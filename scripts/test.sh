#!/usr/bin/env bash
# Every test of the project, from a fresh machine: builds and installs what it needs and runs it.
#  1. a real S3-compatible server for the S3 tests (s3s-fs, SigV4-checked, data on disk);
#  2. the Rust tests (unit, property and integration, over real HTTP, Lambda event JSON and S3);
#  3. the official Alibaba Cloud SDKs from PyPI against the API with signing on;
#  4. template.yaml: cfn-lint (from PyPI) and the checks cfn-lint does not make.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v s3s-fs >/dev/null; then
  cargo install s3s-fs@0.14.1 --features binary
fi
export S3S_FS
S3S_FS=$(command -v s3s-fs)
cargo test --workspace --locked
bash scripts/sdk-test.sh
bash scripts/template-test.sh
