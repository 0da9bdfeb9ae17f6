#!/bin/sh
# test-cli-api: the CLI is a client of the public API like any other
# (issue 10, acceptance 1).
#   test-cli-api.sh CLI_SOURCE_DIR MAILCONN_BINARY LIBMAILCONN.so
# - no file in cli/ includes a header other than system ones, mailconn's
#   public headers and cli/'s own cli.h, and none names an mc__ symbol;
# - the binary needs libmailconn.so (NEEDED), and every mc_ symbol it
#   leaves undefined is one the shared library exports;
# - it defines no mc_ symbol of its own (nothing of core/ linked in).
# Exit 0 when all hold, 1 otherwise (each failure on its own line).
set -u
src=$1
bin=$2
lib=$3
fail=0
say_fail() {
    echo "FAIL: $*"
    fail=1
}

for f in "$src"/*.c "$src"/*.h; do
    [ -f "$f" ] || continue
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | while IFS= read -r line; do
        case $line in
        *'"cli.h"'* | *'"mailconn/mailconn.h"'*) ;;
        *) echo "FAIL: $(basename "$f"):${line%%:*}: includes a private header: ${line#*:}" ;;
        esac
    done | grep . && fail=1
    if grep -n 'mc__' "$f" >/dev/null; then
        say_fail "$(basename "$f") names core internals:"
        grep -n 'mc__' "$f" | head -5
    fi
done

readelf -d "$bin" | grep -q 'NEEDED.*\[libmailconn\.so' ||
    say_fail "$bin does not link libmailconn.so"

exports=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u)
[ -n "$exports" ] || say_fail "$lib exports nothing"
undef=$(nm -D --undefined-only "$bin" | awk '{ print $NF }' | sed 's/@.*//' | grep '^mc_' | sort -u)
[ -n "$undef" ] || say_fail "$bin uses no mc_ symbol from the library (not linked against it?)"
for s in $undef; do
    echo "$exports" | grep -qx "$s" || say_fail "$bin needs $s, which libmailconn.so does not export"
done
own=$(nm --defined-only "$bin" 2>/dev/null | awk '{ print $NF }' | grep '^mc_' | head -5)
[ -z "$own" ] || say_fail "$bin defines library symbols itself (core linked in): $own"

[ $fail -eq 0 ] && echo "ok: cli/ uses only the public API ($(echo "$undef" | wc -l) mc_ symbols from libmailconn.so)"
exit $fail
