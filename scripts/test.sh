#!/bin/sh
# Install, build and run every test: once normally, once under
# AddressSanitizer + UndefinedBehaviorSanitizer, and the threaded ones under
# ThreadSanitizer. Ends with "N passed, N failed".
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/deps.sh

setup() {  # setup BUILDDIR [meson options...]
    dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >/dev/null
    fi
    ninja -C "$dir" >/dev/null
}

setup build
meson test -C build --print-errorlogs --num-processes 2 || true
setup build-asan -Dsanitize=address,undefined -Db_lundef=false
meson test -C build-asan --print-errorlogs --num-processes 2 || true
# ThreadSanitizer over the tests where threads share a context, a pool or a
# token store: 8 threads x 50 messages, --jobs over the pool, single-flight
# refresh across threads and processes, sends through reloads (reload), two
# tenants (contexts) in one process.
setup build-tsan -Dsanitize=thread -Db_lundef=false
meson test -C build-tsan --print-errorlogs --num-processes 2 send pool oauth reload tenants || true
# Every libFuzzer target for a bounded 10 s, two at a time; any finding fails.
fuzz=0
sh scripts/fuzz.sh 10 || fuzz=1

# Count every run from meson's own logs; exit non-zero on any failure.
FUZZ_FAILED=$fuzz python3 - build/meson-logs/testlog.json build-asan/meson-logs/testlog.json \
    build-tsan/meson-logs/testlog.json <<'PY'
import json, os, sys
passed = failed = skipped = 0
if os.environ.get("FUZZ_FAILED") == "1":
    print("fuzzing failed: a finding, or the fuzz build (see above)"); failed += 1
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        print(f"{path}: no test log (the build failed)"); failed += 1; continue
    for line in lines:
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"): passed += 1
        elif r == "SKIP": skipped += 1
        else: failed += 1
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed or passed == 0 else 0)
PY
