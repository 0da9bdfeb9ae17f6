#!/usr/bin/python3
"""Schema vs `mailconn check` (issue 15): the same corpus through both.

Corpus: every file in examples/ and tests/fuzz/corpus/config/, every case
of the bad_cases[] table of tests/unit/test-config.c (the table is compiled
with the build's C compiler, so the bytes are the unit test's own), the
configs that test accepts (config-cases.json "valid") and the schema's own
rules (schema-cases.json). Each config is written 0600 into a private folder and
given to `mailconn --config FILE check` (exit 0 or 78) and to
data/mailconn.schema.json under python3-jsonschema (Draft7Validator).

A disagreement fails the test:
- check accepts, the schema rejects (or the file is not strict JSON);
- check rejects, the schema accepts, and the case is not listed as
  "semantic" (known schema-inexpressible, with the reason) in
  config-cases.json "kinds";
- a case's kind is wrong: syntax (a JSON parser takes it), shape, the
  default for the table (the schema accepts it), or check's verdict is not
  the expected one;
- a key the code accepts (core/config.c's top_keys, server_fields,
  sender_keys and queue keys, each provider's key list) is not in the schema, or the
  schema has one the code does not accept.
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

try:
    import jsonschema
except ImportError:
    print("python3-jsonschema is missing: run scripts/deps.sh (apt-get install python3-jsonschema)")
    sys.exit(1)

SRC = os.environ.get("MAILCONN_SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")
BIN = os.environ["MAILCONN_BIN"]
SCHEMA_PATH = os.path.join(SRC, "data", "mailconn.schema.json")
SCHEMA_REF = "file:///usr/share/mailconn/mailconn.schema.json"   # what examples/ carry

problems = []


def problem(what, text):
    problems.append("%s: %s" % (what, text))


class NotJson(ValueError):
    pass


def load_lenient(data):
    """What an editor sees: JSON (no NaN, no Infinity); a doubled key keeps
    the last value, as most parsers do. Raises NotJson."""
    def constant(c):
        raise NotJson("%s is not JSON" % c)
    try:
        return json.loads(data.decode("utf-8"), parse_constant=constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise NotJson(str(e))


def duplicate_keys(data):
    """Keys doubled in one object (what json-c would keep silently)."""
    found = []

    def pairs(p):
        keys = [k for k, _ in p]
        found.extend(sorted({k for k in keys if keys.count(k) > 1}))
        return dict(p)
    json.loads(data.decode("utf-8"), object_pairs_hook=pairs)
    return found


def schema_verdict(validator, data):
    """(parsed, errors): errors is a list of short messages, [] when valid."""
    try:
        doc = load_lenient(data)
    except NotJson as e:
        return False, ["not JSON: %s" % e]
    errs = []
    for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        path = "".join("[%d]" % p if isinstance(p, int) else ".%s" % p for p in e.absolute_path)
        errs.append("%s: %s" % (path.lstrip(".") or "top level", e.message[:160]))
    return True, errs


def check_verdict(tmp, n, data):
    path = os.path.join(tmp, "c%03d.json" % n)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    env = dict(os.environ, MAILCONN_STATE_DIR=os.path.join(tmp, "state"))
    env.pop("MAILCONN_CONFIG", None)
    r = subprocess.run([BIN, "--config", path, "check"], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    return r.returncode, r.stderr.decode("utf-8", "replace").strip().splitlines()


TABLE_MAIN = r"""
#include <stdio.h>
#include <string.h>
int main(void)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        size_t len = bad_cases[i].len ? bad_cases[i].len : strlen(bad_cases[i].json);
        printf("%s\t", bad_cases[i].what);
        for (size_t k = 0; k < len; k++)
            printf("%02x", (unsigned char)bad_cases[i].json[k]);
        printf("\n");
    }
    return 0;
}
"""


def table_cases(tmp):
    """[(what, bytes)] of bad_cases[] in tests/unit/test-config.c, exactly as
    the unit test feeds them to the parser: the table (from "#define
    MAX_ERRS" to its closing "};") is compiled with the build's C compiler
    and printed."""
    text = open(os.path.join(SRC, "tests", "unit", "test-config.c"), encoding="utf-8").read()
    m = re.search(r"^#define MAX_ERRS.*?^static const bad_case bad_cases\[\] = \{.*?^\};", text,
                  re.S | re.M)
    if not m:
        problem("tests/unit/test-config.c", "bad_cases[] not found")
        return []
    src = os.path.join(tmp, "table.c")
    exe = os.path.join(tmp, "table")
    with open(src, "w", encoding="utf-8") as f:
        f.write("#include <stddef.h>\n" + m.group(0) + "\n" + TABLE_MAIN)
    cc = os.environ.get("MAILCONN_CC", "cc").split("\t")
    r = subprocess.run(cc + ["-std=gnu11", "-w", "-o", exe, src], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    if r.returncode != 0:
        problem("tests/unit/test-config.c", "bad_cases[] does not compile on its own: %s"
                % r.stdout.decode("utf-8", "replace")[:2000])
        return []
    out = subprocess.run([exe], stdout=subprocess.PIPE, check=True, timeout=60).stdout
    cases = []
    for line in out.split(b"\n"):
        if line:
            what, hexdata = line.split(b"\t")
            cases.append((what.decode("utf-8"), bytes.fromhex(hexdata.decode())))
    return cases


def strings(text):
    return re.findall(r'"([^"\\]*)"', text)


def code_keys():
    """The keys the code accepts: core/config.c's tables and each provider's
    key list ({"top": set, "server": set, "sender": set, providers: {name: set}})."""
    config = open(os.path.join(SRC, "core", "config.c"), encoding="utf-8").read()

    def table(pattern):
        m = re.search(pattern, config, re.S)
        if not m:
            problem("core/config.c", "table not found: %s" % pattern)
            return set()
        return set(strings(m.group(1)))
    keys = {
        "top": table(r"top_keys\[\] = \{(.*?)\};"),
        "sender": table(r"sender_keys\[\] = \{(.*?)\};"),
        "queue": set(strings(re.search(r"parse_queue\(.*?keys\[\] = \{(.*?)\};", config, re.S)
                                 .group(1))) if "parse_queue(" in config else set(),
        "server": set(re.findall(r'\{ "(\w+)", f_\w+ \}',
                                 (re.search(r"server_fields\[\] = \{(.*?)\n\};", config, re.S)
                                  or re.match("", "")).group(0))),
        "providers": {},
    }
    # the common OAuth keys are the core's (issue 11): every provider with
    # ".oauth = true" accepts them besides its own list
    oauth_keys = open(os.path.join(SRC, "core", "oauth-keys.c"), encoding="utf-8").read()
    m = re.search(r"mc__oauth_common_keys\[\] = \{(.*?)\};", oauth_keys, re.S)
    if not m:
        problem("core/oauth-keys.c", "table not found: mc__oauth_common_keys")
    common = strings(m.group(1)) if m else []
    for path in sorted(glob.glob(os.path.join(SRC, "providers", "*", "*.c"))):
        text = open(path, encoding="utf-8").read()
        m = re.search(r"static const char \*const \w+_keys\[\] = \{(.*?)\};", text, re.S)
        d = re.search(r'\.name = "([\w-]+)"', text)
        if not m or not d:
            continue
        names = set(strings(m.group(1)))
        if re.search(r"\.oauth = true", text):
            names |= set(common)
        keys["providers"][d.group(1)] = names | {"provider", "proxy"}   # core/config.c owns auth.proxy
    return keys


def check_keys(schema):
    """Every key the code accepts is in the schema, and no other."""
    code = code_keys()
    server = schema["definitions"]["server"]
    auth = server["properties"]["auth"]

    def compare(where, want, have):
        for k in sorted(want - have):
            problem("data/mailconn.schema.json", "%s: key \"%s\" (accepted by the code) missing"
                    % (where, k))
        for k in sorted(have - want):
            problem("data/mailconn.schema.json", "%s: key \"%s\" is not accepted by the code"
                    % (where, k))
    compare("top level", code["top"], set(schema["properties"]))
    compare("servers[]", code["server"], set(server["properties"]))
    compare("sender", code["sender"], set(server["properties"]["sender"]["properties"]))
    compare("queue", code["queue"],
            set(schema["properties"].get("queue", {}).get("properties", {})))
    every = set().union(*code["providers"].values()) if code["providers"] else set()
    compare("auth", every, set(auth["properties"]))
    enum = auth["properties"]["provider"].get("enum", [])
    compare("auth.provider values", set(code["providers"]), set(enum))
    for name, want in sorted(code["providers"].items()):
        have = None
        for rule in auth.get("allOf", []):
            cond = rule.get("if", {}).get("properties", {}).get("provider", {})
            if cond.get("enum") == [name] and "propertyNames" in rule.get("then", {}):
                have = set(rule["then"]["propertyNames"]["enum"])
        if have is None:
            problem("data/mailconn.schema.json", "auth: no key list for provider %s" % name)
        else:
            compare("auth (provider %s)" % name, want, have)


def main():
    schema = json.load(open(SCHEMA_PATH, encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    check_keys(schema)

    corpus = []   # (label, bytes, expect): expect "valid", "syntax", "shape", "semantic", None
    for f in sorted(glob.glob(os.path.join(SRC, "examples", "*.json"))):
        data = open(f, "rb").read()
        corpus.append(("examples/" + os.path.basename(f), data, "valid", None))
        try:
            if load_lenient(data).get("$schema") != SCHEMA_REF:
                problem("examples/" + os.path.basename(f), "\"$schema\" must be \"%s\"" % SCHEMA_REF)
        except NotJson as e:
            problem("examples/" + os.path.basename(f), str(e))
    for f in sorted(glob.glob(os.path.join(SRC, "tests", "fuzz", "corpus", "config", "*"))):
        corpus.append(("fuzz corpus " + os.path.basename(f), open(f, "rb").read(), None, None))
    here = os.path.dirname(os.path.abspath(__file__))
    kinds = json.load(open(os.path.join(here, "config-cases.json"), encoding="utf-8"))
    extra = json.load(open(os.path.join(here, "schema-cases.json"), encoding="utf-8"))
    for name, cases in (("config-cases.json", kinds), ("schema-cases.json", extra)):
        for c in cases.get("valid", []):
            corpus.append(("%s valid \"%s\"" % (name, c["what"]), c["text"].encode("utf-8"),
                           "valid", None))
    for c in extra.get("bad", []):
        corpus.append(("schema-cases.json \"%s\"" % c["what"], c["text"].encode("utf-8"),
                       "shape", None))
    counts = {"agree": 0, "semantic": 0}
    with tempfile.TemporaryDirectory(prefix="mailconn-schema-") as tmp:
        os.chmod(tmp, 0o700)
        # the unit test's table: shape unless config-cases.json says otherwise
        listed = {c["what"]: c for c in kinds["kinds"]}
        table = table_cases(tmp)
        for what, data in table:
            c = listed.get(what, {"kind": "shape"})
            corpus.append(("bad_cases[] \"%s\"" % what, data, c["kind"], c.get("why")))
        for what in sorted(set(listed) - {w for w, _ in table}):
            print("note: config-cases.json lists \"%s\", no longer in bad_cases[]" % what)
        for n, (label, data, expect, why) in enumerate(corpus):
            rc, stderr = check_verdict(tmp, n, data)
            parsed, errs = schema_verdict(validator, data)
            dups = []
            if parsed:
                dups = duplicate_keys(data)
            if rc not in (0, 78):
                problem(label, "mailconn check exited %d (want 0 or 78): %s" % (rc, " | ".join(stderr)))
                continue
            if expect == "valid" and rc != 0:
                problem(label, "mailconn check refuses a config the tests accept: %s"
                        % " | ".join(stderr))
            if expect in ("syntax", "shape", "semantic") and rc != 78:
                problem(label, "mailconn check accepts a config of the bad table")
            if expect == "syntax" and parsed:
                problem(label, "kind \"syntax\", but a JSON parser takes it")
            if expect == "shape" and not errs:
                problem(label, "the schema accepts it: tighten data/mailconn.schema.json, or, "
                        "when draft-07 cannot say it, list it in tests/dist/config-cases.json "
                        "as \"semantic\" with why")
            if expect == "semantic" and not why:
                problem(label, "kind \"semantic\" needs a \"why\"")
            if rc == 0:
                if errs or dups:
                    problem(label, "check accepts, the schema rejects: %s"
                            % " | ".join(errs + ["duplicate key %s" % d for d in dups]))
                else:
                    counts["agree"] += 1
            else:
                if errs or dups:
                    counts["agree"] += 1
                elif expect == "semantic":
                    counts["semantic"] += 1
                    print("known schema-inexpressible: %s: %s" % (label, why))
                elif expect != "shape":   # reported above
                    problem(label, "check rejects (%s), the schema accepts" % " | ".join(stderr))

    print("%d configs: %d verdicts agree, %d known schema-inexpressible" %
          (len(corpus), counts["agree"], counts["semantic"]))
    for p in problems:
        print("DISAGREE " + p)
    print("%d passed, %d failed" % (len(corpus) - len(problems), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
