#!/usr/bin/env python3
"""Write a complete, self-contained project directory for one demo release.

The demo app ships several releases that rail switches between, Capistrano style.
The project common to all of them lives in src/; each release is an overlay
directory releases/<version>/ holding only the files that differ, plus a BASE file
naming the release it builds on (empty for the first one). A release is built by
copying src/, then every overlay from the oldest ancestor to the release itself,
then writing a RELEASE file with the version.

    python build_release.py --list
    python build_release.py v2 /srv/app/releases/v2

Files get the build time as their mtime, like files from any other build.
DEST must not exist yet, or be an empty directory. The tree is assembled beside
DEST and renamed into place, so DEST is never seen half-written.
"""

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
RELEASES = HERE / "releases"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Never copied: build output and local state of someone who ran the app in src/.
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "staticfiles", "media", "RELEASE", "BASE")


class ReleaseError(Exception):
    pass


def release_names():
    """Every release, parents before children, then by name."""
    names = [p.name for p in RELEASES.iterdir() if p.is_dir() and (p / "BASE").is_file()]
    return sorted(names, key=lambda name: (len(chain(name)), name))


def base_of(name):
    return (RELEASES / name / "BASE").read_text(encoding="utf-8").strip() or None


def chain(name):
    """The overlays to apply for release NAME, oldest ancestor first."""
    order = []
    current = name
    while current is not None:
        if not NAME_RE.match(current) or not (RELEASES / current / "BASE").is_file():
            raise ReleaseError(f"unknown release {current!r} (see --list)")
        if current in order:
            raise ReleaseError(f"release {name!r} has a BASE cycle through {current!r}")
        order.append(current)
        current = base_of(current)
    return list(reversed(order))


def check_dest(dest):
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir() or dest.is_symlink():
            raise ReleaseError(f"destination {dest} exists and is not a directory")
        if any(dest.iterdir()):
            raise ReleaseError(f"destination {dest} is not empty")


def build(name, dest):
    overlays = chain(name)
    dest = Path(os.path.abspath(dest))
    check_dest(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        tree = staging / "tree"
        shutil.copytree(SRC, tree, ignore=IGNORED, copy_function=shutil.copy)
        for overlay in overlays:
            shutil.copytree(
                RELEASES / overlay, tree, ignore=IGNORED, copy_function=shutil.copy, dirs_exist_ok=True
            )
        (tree / "RELEASE").write_text(name + "\n", encoding="utf-8")
        tree.chmod(0o755)
        # rename() replaces an empty directory atomically, and fails on a non-empty one.
        os.rename(tree, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return overlays


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the release names, one per line")
    parser.add_argument("version", nargs="?", help="release to build, e.g. v2")
    parser.add_argument("dest", nargs="?", help="directory to write (must not exist, or be empty)")
    args = parser.parse_args(argv)
    try:
        if args.list:
            for name in release_names():
                print(name)
            return 0
        if not args.version or not args.dest:
            parser.error("VERSION and DEST are required (or --list)")
        overlays = build(args.version, args.dest)
    except (ReleaseError, OSError) as err:
        print(f"build_release: {err}", file=sys.stderr)
        return 1
    print(f"built release {args.version} ({' + '.join(['src', *overlays])}) in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
