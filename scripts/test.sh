#!/usr/bin/env bash
# Run the test suite; any pytest exit code but 0 fails (5 = no tests collected is a failure too).
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing" >&2; fi
exit "$rc"
