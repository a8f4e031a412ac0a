#!/usr/bin/env bash
# Runs the R tests for scripts/limma_de.R. Exit status non-zero on any failure; the last line
# is "N passed, M failed".
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

export LIMMA_DE_SCRIPT="${LIMMA_DE_SCRIPT:-$PWD/scripts/limma_de.R}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

Rscript tests/r/test_limma_de.R 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

if ! tail -n 1 "$log" | grep -Eq '^[0-9]+ passed, [0-9]+ failed$'; then
  # the test script died before its summary
  echo "0 passed, 1 failed"
  exit 1
fi
exit "$rc"
