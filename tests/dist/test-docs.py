#!/usr/bin/python3
"""Man pages and completion against the CLI and the schema (issue 15): no drift.

- Every command of `mailconn --help` has its entry (a line *command* ...) in
  COMMANDS of docs/man/mailconn.1.scd, and every option on the command's
  help lines appears in bold (*--option*) in that entry; the global options
  of the usage line in OPTIONS.
- Every long option of cli/*.c (struct option) appears in bold in
  mailconn.1; every option of cmd_sendmail() (its getopt string, the -b
  modes it compares) appears in bold in mailconn-sendmail.8.
- Every key of data/mailconn.schema.json has its term in
  docs/man/mailconn.json.5.scd: top-level keys in TOP LEVEL, server keys in
  SERVER KEYS, *sender.KEY* in SENDER KEYS, *queue.KEY* in QUEUE KEYS,
  *auth.KEY* in AUTH KEYS.
- Every command and long option is offered by data/mailconn.bash.
- The built pages (given as arguments) render with `man -l` without a
  warning.
- The check itself is checked: with one option and one key un-bolded it
  must fail and name them.
"""
import json
import os
import re
import shutil
import subprocess
import sys

SRC = os.environ.get("MAILCONN_SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")
BIN = os.environ["MAILCONN_BIN"]
OPT = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def read(*parts):
    with open(os.path.join(SRC, *parts), encoding="utf-8") as f:
        return f.read()


def sections(scd):
    """{"NAME": [lines], ...} of an scdoc page."""
    out, cur = {}, None
    for line in scd.split("\n"):
        m = re.match(r"^# (.+)$", line)
        if m:
            cur = m.group(1).strip()
            out.setdefault(cur, [])
        elif cur:
            out[cur].append(line)
    return out


def bold(text, token):
    return ("*%s*" % token) in text


def help_commands(help_text):
    """(global options, {command: set of options}) from `mailconn --help`."""
    lines = help_text.split("\n")
    glob = set(OPT.findall(lines[0]))
    cmds, cur = {}, None
    for line in lines[1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent >= 20:
            continue                   # a description's continuation
        syntax = re.split(r"\s{2,}", line.strip())[0]
        if indent <= 2 and not syntax.startswith(("-", "(", "[")):
            cur = syntax.split()[0]
            cmds.setdefault(cur, set())
            syntax = syntax[len(cur):]
        if cur:
            cmds[cur].update(OPT.findall(syntax))
    return glob, cmds


def command_blocks(commands_lines, names):
    """{command: text of its entries} of COMMANDS: an entry runs from a
    line *command* ... to the next such line."""
    blocks, cur = {}, None
    for line in commands_lines:
        m = re.match(r"^\*([a-z][\w-]*)\*", line)
        if m and m.group(1) in names:
            cur = m.group(1)
            blocks.setdefault(cur, "")
        if cur:
            blocks[cur] += line + "\n"
    return blocks


def source_options():
    """(long options of cli/*.c, options cmd_sendmail() compares against)."""
    longs, short = set(), set()
    for name in sorted(os.listdir(os.path.join(SRC, "cli"))):
        if not name.endswith(".c"):
            continue
        text = read("cli", name)
        longs.update("--" + o for o in re.findall(
            r'\{\s*"([A-Za-z0-9][\w-]*)",\s*(?:no|required|optional)_argument', text))
        m = re.search(r"\nint cmd_sendmail\(.*?\n\}\n", text, re.S)
        if m:
            body = m.group(0)
            # getopt's option string, the -b modes it compares, and options
            # compared by hand
            for optstring in re.findall(r'optstring\[\] = "([^"]*)"', body):
                short.update("-" + ch for ch in optstring if ch.isalnum())
            short.update("-b" + mode for mode in re.findall(r'strcmp\(mode, "(\w+)"\)', body))
            short.update(o for o in re.findall(r'str(?:n)?cmp\(a, "(-[^"]*)"', body)
                         if o not in ("-", "--"))
    return longs, short


def schema_keys():
    s = json.loads(read("data", "mailconn.schema.json"))
    server = s["definitions"]["server"]["properties"]
    return {
        "TOP LEVEL": sorted(s["properties"]),
        "SERVER KEYS": sorted(server),
        "SENDER KEYS": ["sender." + k for k in sorted(server["sender"]["properties"])],
        "QUEUE KEYS": ["queue." + k for k in sorted(s["properties"].get("queue", {})
                                                   .get("properties", {}))],
        "AUTH KEYS": ["auth." + k for k in sorted(server["auth"]["properties"])],
    }


def check(man1, man5, man8, completion, help_text, longs, short, keys):
    problems = []
    s1 = sections(man1)
    glob, cmds = help_commands(help_text)
    if not cmds:
        problems.append("no command found in mailconn --help")
    options_text = "\n".join(s1.get("OPTIONS", []))
    for o in sorted(glob):
        if not bold(options_text, o):
            problems.append("mailconn.1 OPTIONS: global option %s (mailconn --help) missing" % o)
    blocks = command_blocks(s1.get("COMMANDS", []), set(cmds))
    for c, opts in sorted(cmds.items()):
        if c not in blocks:
            problems.append("mailconn.1 COMMANDS: no entry *%s* (mailconn --help)" % c)
            continue
        for o in sorted(opts):
            if not bold(blocks[c], o):
                problems.append("mailconn.1 COMMANDS *%s*: option %s (mailconn --help) missing"
                                % (c, o))
    for o in sorted(longs):
        if not bold(man1, o):
            problems.append("mailconn.1: option %s (cli/*.c) missing" % o)
    for o in sorted(short):
        if not bold(man8, o):
            problems.append("mailconn-sendmail.8: sendmail option %s (cli/*.c, cmd_sendmail) missing" % o)
    s5 = sections(man5)
    for sec, names in keys.items():
        terms = "\n".join(l for l in s5.get(sec, []) if l.startswith("*"))
        for k in names:
            if not bold(terms, k):
                problems.append("mailconn.json.5 %s: key %s (data/mailconn.schema.json) missing"
                                % (sec, k))
    words = set(re.findall(r"[\w-]+", completion))
    for c in sorted(cmds):
        if c not in words:
            problems.append("data/mailconn.bash: command %s missing" % c)
    for o in sorted(longs | glob):
        if o.startswith("--") and o not in words:
            problems.append("data/mailconn.bash: option %s missing" % o)
    return problems


def render(pages):
    problems = []
    man = shutil.which("man")
    for p in pages:
        if not os.path.getsize(p):
            problems.append("%s: empty (scdoc)" % p)
            continue
        if not man:
            continue
        r = subprocess.run([man, "--warnings", "-l", p], env=dict(os.environ, MANWIDTH="80",
                           MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if r.returncode != 0 or r.stderr.strip() or len(r.stdout) < 200:
            problems.append("%s: man -l: exit %d: %s" % (p, r.returncode,
                            r.stderr.decode("utf-8", "replace").strip()))
    if pages and not man:
        print("note: man(1) not found: pages not rendered")
    return problems


def main():
    man1 = read("docs", "man", "mailconn.1.scd")
    man5 = read("docs", "man", "mailconn.json.5.scd")
    man8 = read("docs", "man", "mailconn-sendmail.8.scd")
    completion = read("data", "mailconn.bash")
    r = subprocess.run([BIN, "--help"], stdout=subprocess.PIPE, timeout=30)
    if r.returncode != 0:
        print("mailconn --help exited %d" % r.returncode)
        return 1
    help_text = r.stdout.decode("utf-8")
    longs, short = source_options()
    keys = schema_keys()
    args = (completion, help_text, longs, short, keys)

    if not sys.argv[1:]:
        print("note: no built page given (scdoc not found?): pages not rendered")
    problems = check(man1, man5, man8, *args) + render(sys.argv[1:])
    n_checked = sum(len(v) for v in keys.values()) + len(longs) + len(short)

    # the check must notice a missing option and a missing key
    mutated1 = man1.replace("*--names*", "--names")
    mutated5 = man5.replace("*auth.tenant*", "auth.tenant")
    found = check(mutated1, mutated5, man8, *args)
    if not any("--names" in p for p in found) or not any("auth.tenant" in p for p in found):
        problems.append("self-check: un-bolding --names and auth.tenant went unnoticed: %s"
                        % found)

    for p in problems:
        print("DRIFT " + p)
    print("%d commands, %d options and keys checked" % (len(help_commands(help_text)[1]),
                                                         n_checked))
    print("%d passed, %d failed" % (1 if not problems else 0, len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
