#!/bin/bash
# Self-test of the fault checker: hand-made run directories, each with one violation, must be
# reported by `fault.py check` under the right check name, and clean ones must pass. No root and
# no cluster; a few seconds. Ends with "selftest: N passed, M failed"; exit 1 on any failure.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" "$HERE/selftest.py" "$@"
