#!/bin/bash
# `mailconn servers --names` (issue 15): one server name a line, in config
# order, from the config alone. It must work where `servers` cannot: with no
# state folder, with a token store that refuses its folder, and with a
# provider plugin that is not installed (no plugin is loaded).
set -u
BIN=${MAILCONN_BIN:?MAILCONN_BIN not set}
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; }
# expect NAME WANT_RC WANT_STDOUT: compares the last run's exit code and
# standard output exactly
expect() {
    if [[ $rc == "$2" && $out == "$3" ]]; then
        ok "$1"
    else
        not_ok "$1: exit $rc (want $2), stdout [$out] (want [$3]), stderr [$err]"
    fi
}
run() {
    out=$("$@" 2>"$tmp/stderr")
    rc=$?
    err=$(cat "$tmp/stderr")
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 700 "$tmp"
cfg=$tmp/config.json
cat >"$cfg" <<'EOF'
{
  "servers": [
    { "name": "alpha", "host": "h.example", "transport": "starttls", "default": true,
      "auth": { "provider": "basic", "user": "u", "password_env": "NO_SUCH_PASSWORD" } },
    { "name": "beta.mx", "auth": { "provider": "google", "user": "u@gmail.com", "client_id": "c" } },
    { "name": "gamma_2", "host": "127.0.0.1", "transport": "plain" }
  ]
}
EOF
chmod 600 "$cfg"
names=$'alpha\nbeta.mx\ngamma_2'
unset MAILCONN_CONFIG

# a state folder that does not exist, and a HOME without one: nothing is created
export MAILCONN_STATE_DIR=$tmp/missing/state
run env HOME="$tmp/home" "$BIN" --config "$cfg" servers --names
expect "three servers, config order, no state folder" 0 "$names"
[[ -z $err ]] && ok "nothing on stderr" || not_ok "stderr: $err"
[[ ! -e $tmp/missing && ! -e $tmp/home ]] && ok "no state folder created" \
    || not_ok "servers --names created $(ls -d "$tmp"/missing "$tmp"/home 2>/dev/null)"

# the config found through $MAILCONN_CONFIG, as completion finds it
run env MAILCONN_CONFIG="$cfg" "$BIN" servers --names
expect "config from \$MAILCONN_CONFIG" 0 "$names"

# a token store that refuses its folder: `servers` says so and exits 78,
# `servers --names` never opens it
mkdir -m 700 "$tmp/state"
mkdir -m 777 "$tmp/state/tokens"
export MAILCONN_STATE_DIR=$tmp/state
run "$BIN" --config "$cfg" servers
if [[ $rc == 78 && $err == *"token store refused"* ]]; then
    ok "servers: the refused token store is 78 (the setup bites)"
else
    not_ok "servers with a refused token store: exit $rc, stderr [$err]"
fi
run "$BIN" --config "$cfg" servers --names
expect "servers --names with a refused token store" 0 "$names"
[[ -z $err ]] && ok "nothing on stderr" || not_ok "stderr: $err"
if [[ $EUID != 0 ]]; then
    chmod 000 "$tmp/state/tokens"
    run "$BIN" --config "$cfg" servers --names
    expect "servers --names with an unreadable tokens folder" 0 "$names"
    chmod 700 "$tmp/state/tokens"
fi

# no plugin is loaded: a provider that is not installed still lists
sed 's/"provider": "google"/"provider": "not-installed"/' "$cfg" >"$tmp/noplugin.json"
chmod 600 "$tmp/noplugin.json"
run "$BIN" --config "$tmp/noplugin.json" check
if [[ $rc == 78 && $err == *'unknown provider "not-installed"'* ]]; then
    ok "check refuses the missing provider (the setup bites)"
else
    not_ok "check with a missing provider: exit $rc, stderr [$err]"
fi
run "$BIN" --config "$tmp/noplugin.json" --plugin-dir "$tmp/missing-plugins" servers --names
expect "servers --names loads no plugin" 0 "$names"

# what the config's shape refuses is still refused (78, nothing on stdout)
printf '{"servers":[{"name":"a","port":0}]}\n' >"$tmp/bad.json"
chmod 600 "$tmp/bad.json"
run "$BIN" --config "$tmp/bad.json" servers --names
expect "an invalid config is 78" 78 ""
[[ $err == *"servers[0].port: must be an integer 1..65535, got 0"* ]] && ok "the error names the path" \
    || not_ok "stderr: $err"

run "$BIN" --config "$cfg" servers --names extra
expect "an extra argument is 64" 64 ""
run "$BIN" --config "$cfg" servers --nmes
expect "an unknown flag is 64" 64 ""

echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
