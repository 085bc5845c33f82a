#!/usr/bin/env bash
# Shows that the hand-off simulation bites: builds the hand-off machine with its deliberately
# broken transitions compiled in (feature sim-mutants, src/handoff/mutants.rs; never in a normal
# build), runs the simulation against each, and fails if one of them goes unnoticed. Prints, for
# each mutant, in how many schedules of the run it was caught.
#   bash scripts/sim-mutants.sh [schedules per mutant, default 3000]
set -euo pipefail
cd "$(dirname "$0")/.."
schedules="${1:-3000}"
cargo test --release -p cosmic-tests --features sim-mutants --test simulation --no-run
status=0
for mutant in prepared-early no-read-back forget-commits; do
    log="$(COSMIC_SIM_MUTANT=$mutant COSMIC_SIM_COUNT_FAILURES=1 COSMIC_SIM_SCHEDULES=$schedules \
        COSMIC_SIM_BASE_SEED=1 cargo test --release -p cosmic-tests --features sim-mutants \
        --test simulation \
        -- --nocapture 2>&1 || true)"
    line="$(grep -o 'failed_schedules=[0-9]* of [0-9]*' <<<"$log" || true)"
    caught="${line#failed_schedules=}"
    caught="${caught%% *}"
    if [[ -z "$caught" || "$caught" == 0 ]]; then
        echo "mutant $mutant: NOT caught ($line)"
        status=1
    else
        echo "mutant $mutant: caught in $caught of $schedules schedules"
    fi
done
exit "$status"
