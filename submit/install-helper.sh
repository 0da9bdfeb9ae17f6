#!/bin/sh
# meson install script: mailconn-submit setgid mailconn-submit (mode 2755),
# the spool folder <spooldir> (0755 root), its queue/ (0700 root) and drop/
# (1730 root:mailconn-submit). Only when run as root into the live system
# (DESTDIR empty): the group is created if missing (groupadd --system).
# Under DESTDIR, or as another user, it only reports what a package must do.
set -eu
helper="$1"
spool="$2"
if [ -n "${DESTDIR:-}" ] || [ "$(id -u)" != 0 ]; then
    echo "mailconn: not setting up $helper (DESTDIR set or not root): the package must create" \
         "group mailconn-submit, chgrp mailconn-submit + chmod 2755 $helper, and $spool/drop" \
         "(1730 root:mailconn-submit), $spool/queue (0700 root)"
    exit 0
fi
getent group mailconn-submit >/dev/null || groupadd --system mailconn-submit
chgrp mailconn-submit "$helper"
chmod 2755 "$helper"
install -d -m 0755 -o root -g root "$spool"
install -d -m 0700 -o root -g root "$spool/queue"
install -d -m 1730 -o root -g mailconn-submit "$spool/drop"
