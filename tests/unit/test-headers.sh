#!/bin/sh
# test-headers: an application can include json-c beside mailconn.
#   test-headers.sh CC INCLUDE_DIR
# 1. A C file including <json-c/json.h> and <mailconn/mailconn.h> (and
#    plugin.h) compiles with -Wall -Wextra -Werror, in both orders.
# 2. None of the names json-c's <json-c/debug.h> declares (functions and
#    macros: mc_error, mc_debug, MC_ERROR...) is declared by our headers:
#    the names are read from debug.h itself, and looked for in our headers
#    after the preprocessor (so comments do not count).
# Exit 0 when both hold, 1 otherwise (each failure on its own line).
set -u
cc=$1
inc=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0

debug_h=$(echo '#include <json-c/debug.h>' | "$cc" -E -H -x c - 2>&1 >/dev/null \
          | sed -n 's/^\.* *//; /json-c\/debug\.h$/p' | head -n 1)
if [ -z "$debug_h" ] || [ ! -f "$debug_h" ]; then
    echo "FAIL: json-c's debug.h not found (libjson-c-dev)"
    exit 1
fi

for order in "json mailconn" "mailconn json"; do
    : >"$dir/both.c"
    for h in $order; do
        case $h in
        json) echo '#include <json-c/json.h>' >>"$dir/both.c" ;;
        mailconn) printf '#include <mailconn/mailconn.h>\n#include <mailconn/plugin.h>\n' >>"$dir/both.c" ;;
        esac
    done
    cat >>"$dir/both.c" <<'C'
int main(void)
{
    json_object *o = json_object_new_object();
    mc_err *e = NULL;
    mc_error_free(e);
    json_object_put(o);
    return mc_outcome_exit_code(MC_OUTCOME_OK);
}
C
    if ! "$cc" -std=gnu11 -Wall -Wextra -Werror -I"$inc" -c "$dir/both.c" -o "$dir/both.o" \
         2>"$dir/cc.err"; then
        echo "FAIL: json-c then mailconn headers ($order) do not compile together:"
        cat "$dir/cc.err"
        fail=1
    fi
done

# The names debug.h declares: functions (NAME followed by '(' after a type)
# and macros.
names=$( { grep -oE '\b(mc|MC)_[A-Za-z_]+[[:space:]]*\(' "$debug_h" | tr -d ' (\t'
           grep -oE '^#[[:space:]]*define[[:space:]]+(mc|MC)_[A-Za-z_]+' "$debug_h" | awk '{ print $NF }'
         } | sort -u)
if [ -z "$names" ]; then
    echo "FAIL: no mc_/MC_ name found in $debug_h (the test would prove nothing)"
    exit 1
fi
case " $(echo $names) " in
*" mc_error "*) ;;
*) echo "FAIL: mc_error not among debug.h's names: $names"; exit 1 ;;
esac

printf '#include <mailconn/mailconn.h>\n#include <mailconn/plugin.h>\n' >"$dir/ours.c"
"$cc" -std=gnu11 -E -dD -P -I"$inc" "$dir/ours.c" 2>/dev/null \
    | grep -v '^# *[0-9]' >"$dir/ours.i"
# only what our headers declare: drop the system headers' part
for n in $names; do
    if grep -qE "(^|[^A-Za-z0-9_])$n([^A-Za-z0-9_]|$)" "$dir/ours.i"; then
        # a struct tag (struct mc_error) does not clash with a function
        if grep -E "(^|[^A-Za-z0-9_])$n([^A-Za-z0-9_]|$)" "$dir/ours.i" \
             | grep -vqE "struct $n([^A-Za-z0-9_]|$)"; then
            echo "FAIL: our headers declare $n, which json-c's debug.h declares too:"
            grep -nE "(^|[^A-Za-z0-9_])$n([^A-Za-z0-9_]|$)" "$dir/ours.i" | grep -vE "struct $n\b" | head -3
            fail=1
        fi
    fi
done
[ $fail -eq 0 ] && echo "ok: json-c and mailconn headers coexist; checked: $(echo $names)"
exit $fail
