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
"""
import concurrent.futures
import json
import os
import shlex
import subprocess
import sys

FLAGS = ["-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety",
         "-Wno-unknown-warning-option"]


def clang_command(entry):
    args = shlex.split(entry["command"])
    out = ["clang++"]
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
    return out + FLAGS


def main():
    build = sys.argv[1]
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with open(os.path.join(build, "compile_commands.json")) as f:
        entries = [e for e in json.load(f) if ".pb.cc" not in e["file"]]
    only = sys.argv[3:]
    if only:
        entries = [e for e in entries if any(o in e["file"] for o in only)]

    def run(entry):
        p = subprocess.run(clang_command(entry), cwd=entry["directory"],
                           capture_output=True, text=True)
        return entry["file"], p.returncode, p.stderr

    failed = []
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for name, rc, err in pool.map(run, entries):
            if rc != 0:
                failed.append(name)
                sys.stderr.write(f"{name}:\n{err}\n")
    print(f"thread-safety analysis: {len(entries)} translation units, "
          f"{len(failed)} with findings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
