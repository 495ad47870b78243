#!/usr/bin/env python3
"""Clang's thread-safety analysis over every translation unit of a build.

Usage: scripts/thread_safety.py BUILD_DIR [JOBS [PATH_SUBSTRING ...]]

With substrings, only the translation units whose path contains one of
them are checked (for development).

GCC ignores ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED; clang checks
them while it parses (the analysis is part of semantic analysis), so the
check needs clang's front end only: each command of BUILD_DIR's
compile_commands.json is run again with clang++ -fsyntax-only and the
analysis as errors -- no code generated, no link. Generated protobuf code
(no annotations) is skipped. Exits 1 naming every file with a finding.

With ccache installed, each unit is compiled instead (-O0, into a
temporary directory) through ccache, which keeps a clean compile's result:
a unit whose preprocessed source and flags are unchanged since a clean
check is not analysed again (a finding fails the compile, and ccache keeps
no failed compile, so it is found again every time). A unit compiled anew
costs a little more than the front end alone.
"""
import concurrent.futures
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

FLAGS = ["-Wthread-safety", "-Werror=thread-safety",
         "-Wno-unknown-warning-option"]
CCACHE = shutil.which("ccache")


def clang_command(entry, obj):
    """The unit's command for clang++: front end only, or, with `obj`, a
    compile to that object file through ccache."""
    args = shlex.split(entry["command"])
    out = [CCACHE, "clang++"] if obj else ["clang++"]
    skip = False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        if a in ("-c",) or a.startswith("-O"):
            continue
        out.append(a)
    if obj:
        return out + FLAGS + ["-O0", "-c", "-o", obj]
    return out + FLAGS + ["-fsyntax-only"]


def main():
    build = sys.argv[1]
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with open(os.path.join(build, "compile_commands.json")) as f:
        entries = [e for e in json.load(f) if ".pb.cc" not in e["file"]]
    only = sys.argv[3:]
    if only:
        entries = [e for e in entries if any(o in e["file"] for o in only)]

    def run(indexed):
        i, entry = indexed
        obj = os.path.join(objects, f"{i}.o") if objects else None
        p = subprocess.run(clang_command(entry, obj), cwd=entry["directory"],
                           capture_output=True, text=True)
        return entry["file"], p.returncode, p.stderr

    failed = []
    with (tempfile.TemporaryDirectory() if CCACHE
          else contextlib.nullcontext()) as objects, \
            concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for name, rc, err in pool.map(run, enumerate(entries)):
            if rc != 0:
                failed.append(name)
                sys.stderr.write(f"{name}:\n{err}\n")
    print(f"thread-safety analysis: {len(entries)} translation units, "
          f"{len(failed)} with findings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
