#!/usr/bin/env bash
# Every test of the project, from a fresh machine: builds and installs what it needs and runs it.
#  1. the Rust tests (unit, property and integration, over real HTTP, Lambda event JSON and a
#     real S3-compatible server on 127.0.0.1: s3s-fs, SigV4-checked, data on disk, built as
#     testkit/s3-server and started by the tests themselves);
#  2. the official Alibaba Cloud SDKs from PyPI against the API with signing on; two API
#     processes sharing nonces and call rates through a DynamoDB-compatible server (moto, PyPI);
#  3. template.yaml: cfn-lint (from PyPI) and the checks cfn-lint does not make;
#  4. cargo lambda (from PyPI): `cargo lambda watch` + `cargo lambda invoke` with the committed
#     events, for both functions;
#  5. the console page in headless Chromium (Debian's chromium + chromium-driver, selenium from
#     PyPI), signing in the page; screenshots in target/browser-test/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked
bash scripts/sdk-test.sh
bash scripts/dynamodb-test.sh
bash scripts/template-test.sh
bash scripts/lambda-test.sh
bash scripts/browser-test.sh
