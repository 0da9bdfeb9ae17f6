#!/bin/sh
# The main job: install, build, start real SMTP and OAuth servers on
# loopback with a throwaway CA, send through every transport and provider,
# and show what arrived.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/deps.sh
if [ ! -f build/build.ninja ]; then
    meson setup build >/dev/null
fi
ninja -C build >/dev/null
exec node scripts/demo.js
