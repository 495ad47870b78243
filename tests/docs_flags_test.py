#!/usr/bin/env python3
"""The flag tables of docs/operations.md match the daemons' --help.

Usage: docs_flags_test.py OPERATIONS_MD CONTROLLER_BIN NODE_BIN

Every flag a daemon's --help lists must have a row in that daemon's table
("### shutter-controller", "### shutter-node"), and every flag a table
names must exist (a row ending in "*", like `--tls-*`, names a family).
Flags marked "Both daemons." in the controller's table, or "As for the
controller" in the node's, count for both. Exits 1 naming each drift.
"""
import re
import subprocess
import sys


def help_flags(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True,
                         timeout=60).stdout
    flags = set()
    for line in out.splitlines():
        for m in re.finditer(r"(?:^|[\s,])(--[a-z0-9][a-z0-9-]*)", line):
            if line.lstrip().startswith("-"):
                flags.add(m.group(1))
    flags.discard("--help")
    return flags


def table_rows(text, heading):
    start = text.index("\n" + heading + "\n")
    end = text.find("\n### ", start + 1)
    section = text[start:end if end > 0 else len(text)]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `--"):
            continue
        first = line.split("|")[1]
        rows.append((re.findall(r"`(--[a-z0-9*-]+)`", first), line))
    return rows


def main():
    ops, controller_bin, node_bin = sys.argv[1:4]
    text = open(ops, encoding="utf-8").read()
    have = {"controller": help_flags(controller_bin),
            "node": help_flags(node_bin)}
    documented = {"controller": set(), "node": set()}
    both = set()
    for daemon, heading in (("controller", "### shutter-controller"),
                            ("node", "### shutter-node")):
        for flags, line in table_rows(text, heading):
            documented[daemon].update(flags)
            if "Both daemons" in line or "As for the controller" in line:
                both.update(flags)
    for f in both:
        documented["controller"].add(f)
        documented["node"].add(f)
    problems = []
    for daemon in ("controller", "node"):
        doc = documented[daemon]
        families = [f[:-1] for f in doc if f.endswith("*")]
        for f in sorted(have[daemon]):
            if f not in doc and not any(f.startswith(p) for p in families):
                problems.append(f"shutter-{daemon} {f}: in --help, not in "
                                f"the table of docs/operations.md")
        for f in sorted(doc):
            if f.endswith("*"):
                if not any(h.startswith(f[:-1]) for h in have[daemon]):
                    problems.append(f"shutter-{daemon} {f}: no such flags")
                continue
            if f not in have[daemon] and f not in both:
                problems.append(f"shutter-{daemon} {f}: documented, but not "
                                f"in --help")
            if f in both and f not in have[daemon]:
                problems.append(f"shutter-{daemon} {f}: documented for both "
                                f"daemons, but not in its --help")
    for p in problems:
        print(p)
    print(f"{sum(len(v) for v in have.values())} flags checked, "
          f"{len(problems)} drift(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
