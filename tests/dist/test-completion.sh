#!/bin/bash
# bash completion (issue 15): source data/mailconn.bash in a clean bash,
# complete as readline would (COMP_WORDS, COMP_CWORD, the function that
# `complete -p mailconn` names) and compare COMPREPLY exactly. Server names
# come from the real `mailconn servers --names` found on $PATH.
set -u
BIN=${MAILCONN_BIN:?MAILCONN_BIN not set}
SRC=${MAILCONN_SOURCE_ROOT:-$(dirname "$0")/../..}
pass=0
fail=0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 700 "$tmp"
mkdir "$tmp/bin"
ln -s "$BIN" "$tmp/bin/mailconn"
cat >"$tmp/config.json" <<'EOF'
{ "servers": [
    { "name": "gmail", "auth": { "provider": "google", "user": "u@gmail.com", "client_id": "c" } },
    { "name": "relay", "host": "mail.example.org", "transport": "starttls" },
    { "name": "local", "host": "127.0.0.1", "transport": "plain", "default": true } ] }
EOF
cat >"$tmp/other.json" <<'EOF'
{ "servers": [ { "name": "red", "host": "h.example", "transport": "tls" },
               { "name": "rose", "host": "h.example", "transport": "tls" },
               { "name": "blue", "host": "h.example", "transport": "tls" } ] }
EOF
chmod 600 "$tmp/config.json" "$tmp/other.json"
: >"$tmp/report.eml"

# complete WORDS...: the words of the line, the last one being completed;
# prints COMPREPLY one per line
cat >"$tmp/driver.bash" <<'EOF'
source "$1"
shift
spec=$(complete -p mailconn 2>/dev/null)
[[ $spec == *"-F _mailconn"* ]] || { echo "NOT REGISTERED: $spec"; exit 1; }
fn=${spec#*-F }
fn=${fn%% *}
COMP_WORDS=("$@")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
COMPREPLY=()
"$fn" mailconn "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
printf '%s\n' "${COMPREPLY[@]}"
EOF

# expect WHAT WANT WORDS...: WANT is COMPREPLY joined with spaces
expect() {
    local what=$1 want=$2
    shift 2
    local got
    got=$(cd "$tmp" && env -i PATH="$tmp/bin:/usr/bin:/bin" HOME="$tmp" \
        MAILCONN_CONFIG="$tmp/config.json" MAILCONN_STATE_DIR="$tmp/no-state" \
        /bin/bash --norc --noprofile "$tmp/driver.bash" "$SRC/data/mailconn.bash" "$@" 2>&1 \
        | tr '\n' ' ')
    got=${got% }
    if [[ $got == "$want" ]]; then
        pass=$((pass + 1))
        echo "ok - $what"
    else
        fail=$((fail + 1))
        echo "not ok - $what: COMPREPLY [$got], want [$want]"
    fi
}

expect "mailconn se<TAB>: the commands" "servers set-default send sendmail" mailconn se
expect "mailconn <TAB>: every command" \
    "plugins servers check set-default auth send test sendmail queue store" mailconn ""
expect "mailconn send --server <TAB>: the names, config order" "gmail relay local" \
    mailconn send --server ""
expect "mailconn send --server r<TAB>" "relay" mailconn send --server r
expect "--config on the line names the config read" "red rose" \
    mailconn --config "$tmp/other.json" send --server r
expect "mailconn set-default <TAB>" "gmail relay local" mailconn set-default ""
expect "mailconn auth --server l<TAB>" "local" mailconn auth --server l
expect "mailconn servers --<TAB>" "--names" mailconn servers --
expect "mailconn queue <TAB>: its commands" "list run flush drop hold release" mailconn queue ""
expect "mailconn store <TAB>" "copy" mailconn store ""
expect "mailconn store copy --<TAB>" "--from --to" mailconn store copy --
expect "mailconn store copy --from <TAB>: the stores" "file postgresql" mailconn store copy --from ""
expect "mailconn send --b<TAB>" "--bcc --body --body-file" mailconn send --b
expect "mailconn --c<TAB>: global options" "--config" mailconn --c
expect "mailconn send --attach rep<TAB>: files" "report.eml" mailconn send --attach rep
expect "mailconn send -t rep<TAB>: message files" "report.eml" mailconn send -t rep
expect "no server names from a config that does not parse" "" \
    mailconn --config "$tmp/missing.json" send --server ""

echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
