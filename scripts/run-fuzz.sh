#!/usr/bin/env bash
# Runs every libFuzzer harness of a fuzz build for a while.
#
#   scripts/run-fuzz.sh BUILD_DIR SECONDS     (make fuzz SECONDS=N)
#
# Each BUILD_DIR/fuzz/*_fuzz runs for SECONDS seconds on a temporary copy of
# its seed corpus fuzz/corpus/<target>/ (so the committed corpus does not
# grow), with fuzz/<target>.dict when there is one. A crash, leak, timeout
# or out-of-memory fails the run; the reproducer is kept under
# BUILD_DIR/fuzz-artifacts/<target>/ and the log next to it. Exit status:
# 0 when every harness ran clean, 1 otherwise, 2 on a usage error.
set -uo pipefail

usage() {
    echo "usage: $0 BUILD_DIR SECONDS" >&2
    exit 2
}
[ $# -eq 2 ] || usage
build=$1
duration=$2 # not SECONDS: bash gives that name a meaning
[[ $duration =~ ^[0-9]+$ ]] && [ "$duration" -gt 0 ] || usage

root=$(cd "$(dirname "$0")/.." && pwd)
shopt -s nullglob
harnesses=("$build"/fuzz/*_fuzz)
if [ ${#harnesses[@]} -eq 0 ]; then
    echo "run-fuzz: no *_fuzz executables in $build/fuzz (cmake --preset fuzz first)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cn-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"

failed=()
passed=0
for exe in "${harnesses[@]}"; do
    [ -x "$exe" ] || continue
    name=$(basename "$exe" _fuzz)
    # A corpus-replay build (no libFuzzer) cannot take libFuzzer flags.
    if ! grep -q -a "max_total_time" "$exe"; then
        echo "run-fuzz: $exe is not a libFuzzer build (configure with --preset fuzz)" >&2
        failed+=("$name(not-libfuzzer)")
        continue
    fi
    corpus="$work/$name"
    mkdir -p "$corpus"
    seeds="$root/fuzz/corpus/$name"
    if [ -d "$seeds" ]; then
        cp -R "$seeds/." "$corpus/"
    else
        echo "run-fuzz: warning: no seed corpus $seeds" >&2
    fi
    out="$artifacts/$name"
    rm -rf "$out"
    mkdir -p "$out"
    args=(-max_total_time="$duration" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1
          -artifact_prefix="$out/")
    [ -f "$root/fuzz/$name.dict" ] && args+=(-dict="$root/fuzz/$name.dict")
    log="$out/fuzz.log"
    echo "run-fuzz: $name for ${duration}s ($(find "$corpus" -type f | wc -l) seeds)"
    "$exe" "${args[@]}" "$corpus" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    if [ $rc -ne 0 ] || compgen -G "$out/crash-*" >/dev/null || compgen -G "$out/leak-*" >/dev/null ||
        compgen -G "$out/timeout-*" >/dev/null || compgen -G "$out/oom-*" >/dev/null; then
        echo "run-fuzz: FAIL $name (exit $rc); log $log; artifacts:"
        ls "$out" | grep -v '^fuzz.log$' | sed "s|^|    $out/|"
        grep -m1 -E "ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error" "$log" | sed 's/^/    /'
        failed+=("$name")
    else
        echo "run-fuzz: ok   $name: ${execs:-?} runs, ${cov:-cov: ?}"
        rm -f "$log"
        rmdir "$out" 2>/dev/null || true
        passed=$((passed + 1))
    fi
    rm -rf "$corpus"
done

echo "run-fuzz: $passed passed, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
