#!/usr/bin/env bash
# Install what is missing, build (warnings are errors) and run every test with ctest.
#   scripts/test.sh           plain build in build/
#   scripts/test.sh --asan    ASan + UBSan build in build-asan/
#   scripts/test.sh --fuzz S  build the libFuzzer targets with clang and run each for S seconds
set -euo pipefail
cd "$(dirname "$0")/.."

mode=plain
fuzz_seconds=0
case "${1:-}" in
  "") ;;
  --asan) mode=asan ;;
  --fuzz) mode=fuzz; fuzz_seconds="${2:-60}" ;;
  *) echo "usage: scripts/test.sh [--asan | --fuzz SECONDS]" >&2; exit 2 ;;
esac

# Tests listen on PAYRAFT_PORT_BASE (default 7000) + 0..999. Inside the kernel's ephemeral
# range those ports collide with the outgoing connections of the tests themselves.
base=${PAYRAFT_PORT_BASE:-7000}
case "$base" in ''|*[!0-9]*) echo "test.sh: PAYRAFT_PORT_BASE must be a number" >&2; exit 2 ;; esac
read -r eph_lo eph_hi < /proc/sys/net/ipv4/ip_local_port_range
if [ $((base + 999)) -ge "$eph_lo" ] && [ "$base" -le "$eph_hi" ]; then
  echo "test.sh: PAYRAFT_PORT_BASE=$base overlaps the ephemeral ports $eph_lo-$eph_hi; pick one below $((eph_lo - 1000))" >&2
  exit 2
fi

scripts/deps.sh
jobs=$(nproc)

case "$mode" in
  plain)
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j "$jobs"
    ctest --test-dir build --output-on-failure -j "$jobs"
    ;;
  asan)
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPAYRAFT_ASAN=ON >/dev/null
    cmake --build build-asan -j "$jobs"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest --test-dir build-asan --output-on-failure -j "$jobs"
    ;;
  fuzz)
    CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPAYRAFT_FUZZ=ON >/dev/null
    cmake --build build-fuzz -j "$jobs" --target fuzz_all
    for target in build-fuzz/fuzz/fuzz_*; do
      name=$(basename "$target")
      # New inputs go to the build's own corpus; tests/fuzz/corpus/NAME (checked in, merged
      # from longer runs with -merge=1) is read as seeds only, so that a short run starts deep.
      corpus="build-fuzz/corpus-$name"
      seeds="tests/fuzz/corpus/$name"
      mkdir -p "$corpus"
      dirs=("$corpus")
      if [ -d "$seeds" ]; then dirs+=("$seeds"); fi
      log="build-fuzz/$name.log"
      echo "fuzz: $name for ${fuzz_seconds}s"
      status=0
      "$target" -max_total_time="$fuzz_seconds" -print_final_stats=1 "${dirs[@]}" >"$log" 2>&1 ||
        status=$?
      grep -E '^(stat::number_of_executed_units|Done)' "$log" || true
      if [ "$status" -ne 0 ]; then
        tail -n 40 "$log" >&2
        echo "fuzz: $name failed (exit $status); the crashing input is in the log above" >&2
        exit 1
      fi
    done
    ;;
esac
