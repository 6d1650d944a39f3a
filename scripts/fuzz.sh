#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time, one after the other, and
# prints a per-target summary (runs, exec/s, coverage, crashes).
#
# NEEDS the nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz`). The regular test command (scripts/test.sh, cargo build,
# cargo nextest run) needs neither: fuzz/ is a crate of its own, outside the main build.
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 60); the whole run takes about
#                   targets x FUZZ_SECONDS plus one build (a few minutes the first time)
#   FUZZ_TARGETS    space-separated targets to run (default: all, from `cargo fuzz list`)
#   FUZZ_SANITIZER  none (default: gatehouse forbids unsafe code, and none is ~2x faster)
#                   or address / memory / thread / leak
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a hang (default 10)
#
# Exit status: 0 when no target crashed, 1 when any did (a panic, a failed assertion, a
# hang or running out of memory; the input is kept in fuzz/artifacts/<target>/), 2 when
# the tools are missing. Each target's full libFuzzer log is in fuzz/logs/<target>.log.
# Reproduce a crash with `cargo +nightly fuzz run <target> <artifact>` and shrink it with
# `cargo +nightly fuzz tmin <target> <artifact>` (add `--sanitizer none -a` as here).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
fuzz_dir=$(pwd)

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
timeout="${FUZZ_TIMEOUT:-10}"
# fuzz/ keeps its own target directory, whatever the main crate uses.
export CARGO_TARGET_DIR="$fuzz_dir/target"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh needs cargo-fuzz: cargo install cargo-fuzz" >&2
  exit 2
fi

# -a: debug assertions (and so overflow checks) on, as in the unit tests.
flags=(--sanitizer "$sanitizer" -a)
targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"

echo "==> building the fuzz targets (sanitizer: $sanitizer)"
cargo +nightly fuzz build "${flags[@]}"

mkdir -p logs
summary=()
failed=0
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | sort)
  args=(-max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1)
  [ -f "dicts/$t.dict" ] && args+=(-dict="dicts/$t.dict")
  corpora=("corpus/$t")
  [ -d "seeds/$t" ] && corpora+=("seeds/$t")
  echo "==> $t: ${seconds}s"
  start=$(date +%s)
  status=0
  # New inputs go to corpus/<t> (ignored by git); seeds/<t> is only read.
  cargo +nightly fuzz run "${flags[@]}" "$t" "${corpora[@]}" -- "${args[@]}" \
    >"logs/$t.log" 2>&1 || status=$?
  elapsed=$(($(date +%s) - start))
  new=$(comm -13 <(printf '%s\n' "$before") <(find "artifacts/$t" -type f | sort) | grep . || true)
  crashes=$(grep -c . <<<"$new" || true)
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes=1 # failed without writing an artifact (e.g. did not build)
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "logs/$t.log" | tail -1)
  last=$(grep -E '^#[0-9]+.* cov: ' "logs/$t.log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  summary+=("$(printf '%-16s %6ss %12s %9s %6s %7s %7s %8s' "$t" "$elapsed" "${runs:-?}" \
    "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes")")
  if [ "$crashes" -ne 0 ]; then
    failed=1
    # The panic message (the line after "panicked at") and the kept input.
    grep -E -A1 "panicked at|^SUMMARY" "logs/$t.log" | head -4 | sed 's/^/    /' || true
    [ -n "$new" ] && sed 's/^/    artifact: fuzz\//' <<<"$new"
  fi
done

echo
echo "==> summary (${seconds}s per target, sanitizer: $sanitizer)"
printf '%-16s %7s %12s %9s %6s %7s %7s %8s\n' target time runs exec/s cov ft corpus crashes
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "CRASHES FOUND: see fuzz/artifacts/ and fuzz/logs/" >&2
  exit 1
fi
echo "no crashes"
