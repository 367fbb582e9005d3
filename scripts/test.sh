#!/usr/bin/env bash
# Every test of the project, from a fresh machine: builds what it needs and runs it.
#  1. the Rust tests (unit, property and integration, over real HTTP and Lambda event JSON);
#  2. the official Alibaba Cloud SDKs from PyPI against the API with signing on.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
bash scripts/sdk-test.sh
