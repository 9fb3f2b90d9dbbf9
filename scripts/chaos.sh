#!/usr/bin/env bash
# The chaos suite, longer than CI runs it: real clusters of 3 and 5 node processes under SIGKILL, SIGSTOP/SIGCONT,
# graceful restarts and same-name restarts, then the history checker. Prints one summary line per cluster size
# (operations tried and acknowledged, epochs answered, faults per kind, fenced renew/complete, violations, failures).
#   scripts/chaos.sh [SECONDS]      (default 300 per cluster size)
set -euo pipefail
cd "$(dirname "$0")/.."
export CHAOS_SECONDS=${1:-300}
echo "== chaos run: ${CHAOS_SECONDS}s per cluster size, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), nproc $(nproc), commit $(git rev-parse --short HEAD)"
dotnet test tests/Coordinator.IntegrationTests -c Release --filter "FullyQualifiedName~ChaosTests" \
  --logger "console;verbosity=normal" 2>&1 | grep -E '^\[chaos|VIOLATION|FAILURE|Passed |Failed |error' || true
