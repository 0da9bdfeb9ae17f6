#!/bin/sh
# test-symbols: what leaves the shared objects.
#   test-symbols.sh LIBMAILCONN.so PLUGIN.so...
# - libmailconn.so exports only the public API: every defined dynamic
#   function or object matches ^mc_[a-z], none starts with mc__, and the list
#   is not empty (mc_strerror is there);
# - libmailconn.so does not need libcurl or libssl (readelf -d NEEDED);
# - each plugin exports exactly one defined dynamic symbol: mc_plugin_entry.
# Exit 0 when all hold, 1 otherwise (each failure on its own line).
set -u

fail=0
say_fail() {
    echo "FAIL: $*"
    fail=1
}

if [ $# -lt 1 ]; then
    echo "usage: $0 LIBMAILCONN.so [PLUGIN.so...]" >&2
    exit 1
fi
for tool in nm readelf; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "FAIL: $tool not found (binutils)"
        exit 1
    fi
done

# Defined dynamic symbols that are code or data (not the version node, 'A').
exported() {
    nm -D --defined-only "$1" | awk 'NF >= 3 && $2 != "A" { print $3 }' | sed 's/@.*//' | sort -u
}

lib=$1
shift
if [ ! -f "$lib" ]; then
    say_fail "$lib: no such file"
    exit 1
fi

syms=$(exported "$lib") || { say_fail "$lib: nm failed"; exit 1; }
count=$(printf '%s\n' "$syms" | grep -c .)
if [ "$count" -eq 0 ]; then
    say_fail "$lib exports nothing"
fi
if ! printf '%s\n' "$syms" | grep -qx 'mc_strerror'; then
    say_fail "$lib does not export mc_strerror"
fi
bad=$(printf '%s\n' "$syms" | grep . | grep -v '^mc_[a-z]')
if [ -n "$bad" ]; then
    say_fail "$lib exports symbols outside the public API:" $bad
fi
internal=$(printf '%s\n' "$syms" | grep '^mc__')
if [ -n "$internal" ]; then
    say_fail "$lib exports internal mc__ symbols:" $internal
fi
echo "$lib: $count exported symbols"

needed=$(readelf -d "$lib" | awk '/\(NEEDED\)/ { gsub(/[][]/, "", $NF); print $NF }')
if [ -z "$needed" ]; then
    say_fail "$lib: readelf found no NEEDED entries"
fi
for n in $needed; do
    case $n in
    libcurl*|libssl*) say_fail "$lib needs $n" ;;
    esac
done
echo "$lib needs:" $needed

for p in "$@"; do
    if [ ! -f "$p" ]; then
        say_fail "$p: no such file"
        continue
    fi
    psyms=$(exported "$p") || { say_fail "$p: nm failed"; continue; }
    if [ "$psyms" != "mc_plugin_entry" ]; then
        say_fail "$p must export exactly mc_plugin_entry, exports:" $psyms
    else
        echo "$p: exports mc_plugin_entry only"
    fi
done

exit $fail
