#!/bin/bash
# The Debian packages (issue 15): build them from a temporary copy of the
# tree with dpkg-buildpackage (nocheck), lintian them (no error, no warning
# that debian/*.lintian-overrides does not explain), install them with apt
# into a throwaway Debian 12 chroot, check what they put there, purge them
# and check that nothing is left.
#
# The chroot's base (debootstrap --variant=minbase bookworm, from the mirror
# this machine's apt uses) is cached in BUILD/pkg-chroot-base; each run works
# on a fresh copy. The chroot runs in a private mount namespace (unshare -m),
# so its /proc and /dev mounts end with it. Needs root, dpkg-buildpackage,
# debhelper, lintian and debootstrap (scripts/deps.sh installs them; a
# missing one fails; only a run without root skips, 77). Network: the
# Debian mirror only (debootstrap, apt-get update/install in the chroot).
set -euo pipefail

src=${MAILCONN_SOURCE_ROOT:?}
build=${MAILCONN_BUILD_ROOT:?}

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root (chroot, debootstrap)"
for t in dpkg-buildpackage dh lintian debootstrap unshare chroot git; do
    command -v "$t" >/dev/null || fail "$t is not installed (scripts/deps.sh installs it)"
done

version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
upstream=${version%-*}
packages="libmailconn0 libmailconn-dev mailconn-plugins mailconn mailconn-mta"

work=$(mktemp -d "$build/pkg-run.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- build from a copy (dpkg-buildpackage writes to the parent folder) ---
tree="$work/mailconn-$upstream"
mkdir "$tree"
(cd "$src" && git ls-files -co --exclude-standard -z \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | xargs -0 cp --parents -a -t "$tree")
echo "building $version in $tree"
if ! (cd "$tree" && DEB_BUILD_OPTIONS=nocheck DEB_BUILD_PROFILES=nocheck timeout 900 dpkg-buildpackage -us -uc -b) \
        >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log" >&2
    fail "dpkg-buildpackage"
fi
changes=$(ls "$work"/mailconn_"$version"_*.changes)

# --- lintian: no errors, no warnings (overrides carry their reasons) ---
timeout 600 lintian "$changes" >"$work/lintian.log" 2>&1 || true
cat "$work/lintian.log"
if grep -q '^[EW]: ' "$work/lintian.log"; then
    fail "lintian reports errors or warnings"
fi
echo "lintian: clean"

# --- the chroot base, cached ---
base="$build/pkg-chroot-base"
if [ ! -x "$base/bin/sh" ]; then
    mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' \
                 /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1)
    [ -n "$mirror" ] || mirror=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' \
                                     /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
                                 | grep -v security | head -1)
    [ -n "$mirror" ] || fail "no Debian mirror in /etc/apt/sources.list*"
    echo "debootstrap bookworm from $mirror"
    rm -rf "$base.new"
    timeout 1200 debootstrap --variant=minbase \
        --include=gcc,libc6-dev,pkg-config,man-db,systemd,adduser,libjson-c5,libcurl4,libssl3 \
        bookworm "$base.new" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; rm -rf "$base.new"; fail "debootstrap"; }
    chroot "$base.new" apt-get clean
    mv "$base.new" "$base"
fi
root="$work/root"
cp -a "$base" "$root"
mkdir "$root/tmp/debs"
for p in $packages; do
    cp "$work/${p}_${version}_"*.deb "$root/tmp/debs/"
done
cp "$src/examples/send.c" "$root/tmp/send.c"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"

cat >"$root/tmp/inside.sh" <<EOF
#!/bin/bash
set -euo pipefail
fail() { echo "FAIL (chroot): \$*" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
packages="$packages"
multiarch=\$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
plugindir=/usr/lib/\$multiarch/mailconn/plugins
helper=/usr/libexec/mailconn/mailconn-submit

timeout 300 apt-get -q update >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; fail "apt-get update"; }
timeout 600 apt-get -q install -y --no-install-recommends /tmp/debs/*.deb >>/tmp/apt.log 2>&1 \
    || { tail -30 /tmp/apt.log; fail "apt-get install"; }
for p in \$packages; do
    dpkg -s "\$p" | grep -q '^Status: install ok installed' || fail "\$p not installed"
    dpkg -L "\$p" >>/tmp/files
done

# the packaged plugins, from the packaged folder
mailconn plugins >/tmp/plugins
cat /tmp/plugins
for f in \$(dpkg -L mailconn-plugins | grep '\.so\$'); do
    grep -q " \$f\\\$" /tmp/plugins || fail "mailconn plugins does not list \$f"
done
# every packaged module once (3 transports, 4 providers, the OAuth and TLS
# engines, 2 proxies), and the built-in file store
n=\$(dpkg -L mailconn-plugins | grep -c '\.so\$')
[ "\$n" = 11 ] || fail "mailconn-plugins holds \$n modules, expected 11"
[ "\$(grep -vc '(built in)\$' /tmp/plugins)" = "\$n" ] || fail "expected \$n plugins"
grep -qx 'token-store  file      (built in)' /tmp/plugins || fail "the built-in file store is not listed"
grep -v '(built in)\$' /tmp/plugins | grep -v " \$plugindir/" && fail "a plugin from outside \$plugindir"
echo "ok: mailconn plugins lists the \$n plugins in \$plugindir and the built-in store"

# the -dev package builds the example
gcc -Wall -Werror -o /tmp/send /tmp/send.c \$(pkg-config --cflags --libs mailconn) \
    || fail "examples/send.c does not build with pkg-config"
lib=\$(ldd /tmp/send | sed -n 's/^[[:space:]]*libmailconn\.so\.0 => \([^ ]*\) .*/\1/p')
[ "\$(readlink -f "\$lib")" = /usr/lib/\$multiarch/libmailconn.so.$upstream ] \
    || fail "send does not use the packaged library: \$(ldd /tmp/send)"
rc=0; /tmp/send 2>/dev/null || rc=\$?
[ "\$rc" = 64 ] || fail "send without arguments: exit \$rc, expected 64 (usage)"
echo "ok: examples/send.c builds with pkg-config and runs"

# man pages
man -w mailconn mailconn.json >/tmp/man || fail "man -w"
grep -qx /usr/share/man/man1/mailconn.1.gz /tmp/man || fail "mailconn(1) not found"
grep -qx /usr/share/man/man5/mailconn.json.5.gz /tmp/man || fail "mailconn.json(5) not found"
man -w 8 sendmail | grep -q sendmail.8 || fail "sendmail(8) not found"
echo "ok: man -w finds mailconn(1), mailconn.json(5), sendmail(8)"

# the MTA
for l in /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq /usr/bin/newaliases; do
    [ "\$(readlink -f \$l)" = /usr/bin/mailconn ] || fail "\$l does not resolve to mailconn"
done
dpkg -S /usr/sbin/sendmail | grep -q '^mailconn-mta:' || fail "sendmail not from mailconn-mta"
newaliases || fail "newaliases"
echo "ok: sendmail, mailq and newaliases are mailconn (mailconn-mta)"
getent group mailconn-submit >/dev/null || fail "no group mailconn-submit"
[ "\$(stat -c '%a %U %G' \$helper)" = "2755 root mailconn-submit" ] \
    || fail "helper: \$(stat -c '%a %U %G' \$helper)"
[ "\$(stat -c '%a %U %G' /var/spool/mailconn)" = "755 root root" ] || fail "spool mode"
[ "\$(stat -c '%a %U %G' /var/spool/mailconn/queue)" = "700 root root" ] || fail "queue mode"
[ "\$(stat -c '%a %U %G' /var/spool/mailconn/drop)" = "1730 root mailconn-submit" ] || fail "drop mode"
echo "ok: helper 2755 root:mailconn-submit, spool 0755, queue 0700, drop 1730"

units=\$(dpkg -L mailconn-mta | grep '^/lib/systemd/system/mailconn-queue\.')
[ "\$(echo "\$units" | wc -l)" = 3 ] || fail "expected 3 units: \$units"
timeout 120 systemd-analyze verify \$units || fail "systemd-analyze verify"
echo "ok: systemd-analyze verify" \$units

# purge: nothing left
timeout 600 apt-get -q purge -y \$packages >>/tmp/apt.log 2>&1 || { tail -30 /tmp/apt.log; fail "apt-get purge"; }
for p in \$packages; do
    dpkg -s "\$p" >/dev/null 2>&1 && fail "\$p still known to dpkg"
done
left=0
while read -r f; do
    [ -e "\$f" ] || [ -L "\$f" ] || continue
    # a folder another package still owns (/usr/bin, /usr/share/man/man1)
    # stays, and so do / and merged-/usr's /lib -> usr/lib
    [ "\$f" = /. ] && continue
    if [ -d "\$f" ] && { [ -L "\$f" ] || dpkg -S "\$f" >/dev/null 2>&1; }; then continue; fi
    echo "left after purge: \$f" >&2; left=1
done </tmp/files
[ "\$left" = 0 ] || fail "files left after purge"
[ ! -e /var/spool/mailconn ] || fail "/var/spool/mailconn left after purge"
getent group mailconn-submit >/dev/null && fail "group mailconn-submit left after purge"
dpkg-statoverride --list | grep -q mailconn && fail "statoverride left after purge"
echo "ok: purge leaves no file, spool, group or statoverride"
EOF
chmod +x "$root/tmp/inside.sh"

timeout 1200 unshare -m --propagation private /bin/sh -c '
    set -e
    mount -t proc proc "$1/proc"
    mount --rbind /dev "$1/dev"
    exec chroot "$1" /tmp/inside.sh
' sh "$root" || fail "checks in the chroot"
echo "PASS"
