#!/bin/sh
# Install what mailconn needs to build and test on Debian 12 (run as root).
# Idempotent: a second run installs nothing new.
set -eu
pkgs="build-essential meson ninja-build pkg-config libjson-c-dev libssl-dev
      libcurl4-openssl-dev libcmocka-dev openssl media-types ca-certificates valgrind
      clang libclang-rt-14-dev
      python3-jsonschema scdoc bash-completion man-db groff-base
      debhelper dpkg-dev fakeroot lintian debootstrap
      microsocks tinyproxy
      postgresql-15 libpq-dev"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # tinyproxy's package would start a system service: no service starts
    # while installing (policy-rc.d 101); the proxy tests run their own.
    rc_made=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        rc_made=1
    fi
    # postgresql-15 (store-postgresql's tests run their own cluster with
    # initdb): no system cluster is made (postgresql-common reads this).
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        mkdir -p /etc/postgresql-common
        echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf
    fi
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    [ -z "$rc_made" ] || rm -f /usr/sbin/policy-rc.d
fi
# the system tinyproxy stays off: tests start their own on their own port
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now tinyproxy >/dev/null 2>&1 || true
fi
# Node runs the test peers (smtp-server, oidc-provider). Use the machine's own
# node and npm when present: Debian's npm conflicts with a separately
# installed node.
if ! command -v node >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
cd "$(dirname "$0")/../tests/peers"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
