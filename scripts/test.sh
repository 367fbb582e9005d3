#!/usr/bin/env bash
# Every test of the project, from a fresh machine: builds what it needs and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
