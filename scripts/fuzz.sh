#!/bin/sh
# Run every libFuzzer target for SECONDS each (default 10), two at a time
# (the machines have 2 cores), starting from tests/fuzz/corpus/<target>/.
# Builds build-fuzz with clang (-Dfuzz=true) first. Fails on any finding:
# crash, sanitizer report, broken invariant, timeout, out of memory.
#   scripts/fuzz.sh [SECONDS]      e.g. scripts/fuzz.sh 600 for ten minutes each
#   FUZZ_TARGETS="reply ehlo" scripts/fuzz.sh 60    only these targets
# New inputs go to build-fuzz/fuzz-corpus/<target>/ (the source tree is
# only read); a finding is saved as build-fuzz/fuzz-findings/<target>-crash-*
# and its log kept in build-fuzz/fuzz-logs/<target>.log.
set -eu
secs=${1:-10}
case $secs in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bdir=build-fuzz
all="config reply ehlo sasl-error address header rfc2047 session token-response token-file redirect token-store device-auth"
targets=${FUZZ_TARGETS:-$all}

if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz: clang is not installed (apt-get install clang)" >&2
    exit 1
fi
if [ ! -f "$bdir/build.ninja" ]; then
    CC=clang meson setup "$bdir" -Dfuzz=true >/dev/null
elif ! meson introspect "$bdir" --buildoptions | grep -q '"name": "fuzz", "value": true'; then
    meson configure "$bdir" -Dfuzz=true >/dev/null
fi
exes=""
for t in $targets; do
    exes="$exes tests/fuzz/fuzz-$t"
done
# shellcheck disable=SC2086
if ! ninja -C "$bdir" $exes >"$bdir/fuzz-build.log" 2>&1; then
    echo "fuzz: the fuzz build (clang, $bdir) failed; its last lines:" >&2
    grep -E "error|FAILED" "$bdir/fuzz-build.log" | tail -20 >&2
    exit 1
fi

mkdir -p "$bdir/fuzz-logs" "$bdir/fuzz-findings"

# Inputs are capped per target by the targets themselves; -max_len keeps
# mutations near that, -rss_limit_mb / -malloc_limit_mb make a runaway
# allocation a finding, -timeout one slow input.
fuzz_one() {  # fuzz_one TARGET
    t=$1
    work="$bdir/fuzz-corpus/$t"
    mkdir -p "$work"
    max_len=8192
    case $t in
        config|header|reply|ehlo|session) max_len=16384 ;;
        redirect) max_len=9000 ;;
    esac
    "$bdir/tests/fuzz/fuzz-$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=512 -max_len="$max_len" -print_final_stats=1 \
        -artifact_prefix="$bdir/fuzz-findings/$t-" \
        "$work" "tests/fuzz/corpus/$t" >"$bdir/fuzz-logs/$t.log" 2>&1
}

report() {  # report TARGET STATUS
    t=$1
    log="$bdir/fuzz-logs/$t.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ "$2" -eq 0 ]; then
        printf 'fuzz-%-15s %5s s %12s execs  clean\n' "$t" "$secs" "${execs:-?}"
    else
        printf 'fuzz-%-15s %5s s %12s execs  FINDING (exit %s), log %s\n' "$t" "$secs" \
            "${execs:-?}" "$2" "$log"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*invariant broken|.*runtime error)' "$log" \
            | head -n 5 | sed 's/^/    /'
        ls "$bdir/fuzz-findings/$t-"* 2>/dev/null | sed 's/^/    input: /'
    fi
}

# Two at a time: start a pair, wait for both.
failed=0
set -- $targets
while [ $# -gt 0 ]; do
    a=$1; shift
    fuzz_one "$a" & pa=$!
    b=""
    if [ $# -gt 0 ]; then
        b=$1; shift
        fuzz_one "$b" & pb=$!
    fi
    sa=0; wait "$pa" || sa=$?
    report "$a" "$sa"
    [ "$sa" -eq 0 ] || failed=1
    if [ -n "$b" ]; then
        sb=0; wait "$pb" || sb=$?
        report "$b" "$sb"
        [ "$sb" -eq 0 ] || failed=1
    fi
done
if [ "$failed" -ne 0 ]; then
    echo "fuzz: FINDINGS (see above)"
    exit 1
fi
echo "fuzz: every target clean"
