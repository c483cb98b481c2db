#!/usr/bin/env bash
# Runs the codec and store benchmarks (all features) and regenerates
# docs/BENCHMARKS.md and docs/bench-*.svg from their results, end to end.
#
#   scripts/bench.sh                 # full run, then the page
#   scripts/bench.sh --report-only   # only rebuild the page from the last run
#   BENCH_NOTE="..." scripts/bench.sh  # a status line shown at the top of the page
#
# Results go where criterion puts them: $CARGO_TARGET_DIR/criterion (the
# target directory `cargo metadata` reports when CARGO_TARGET_DIR is unset).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
    CARGO_TARGET_DIR="$(cargo metadata --no-deps --format-version 1 |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
fi
export CARGO_TARGET_DIR
out="${CRITERION_HOME:-$CARGO_TARGET_DIR/criterion}/dynamo-es"

commands=(
    "cargo bench --all-features --bench codecs"
    "cargo bench --all-features --bench store"
)

if [[ "${1:-}" != "--report-only" ]]; then
    mkdir -p "$out"
    started="$(date +%s)"
    load_before="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
    for command in "${commands[@]}"; do
        echo "==> $command" >&2
        $command
    done
    load_after="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
    STARTED="$started" FINISHED="$(date +%s)" LOAD_BEFORE="$load_before" \
    LOAD_AFTER="$load_after" RUSTC="$(rustc -V)" GIT="$(git rev-parse --short HEAD 2>/dev/null || true)" \
    NOTE="${BENCH_NOTE:-}" OUT="$out" python3 - "${commands[@]}" <<'PY'
import json, os, sys
run = {
    "started": int(os.environ["STARTED"]),
    "finished": int(os.environ["FINISHED"]),
    "load_before": os.environ["LOAD_BEFORE"],
    "load_after": os.environ["LOAD_AFTER"],
    "rustc": os.environ["RUSTC"],
    "git": os.environ["GIT"],
    "note": os.environ["NOTE"],
    "commands": sys.argv[1:] + ["python3 scripts/bench_report.py"],
}
with open(os.path.join(os.environ["OUT"], "run.json"), "w", encoding="utf-8") as f:
    json.dump(run, f, indent=2)
PY
fi

python3 scripts/bench_report.py
