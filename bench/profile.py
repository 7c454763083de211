"""Summarise py-spy's collapsed stacks (``--format raw``): where the samples went.

    python -m bench.profile /tmp/prof/ult-serve.txt [--top 25] [--filter ult_actors]
        [--thread MainThread]

Prints the functions with the most samples on top of the stack (self) and
the most samples anywhere on the stack (inclusive, each counted once per
stack), as percentages of all samples.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path


def load(path: Path, thread: str = "") -> list[tuple[list[str], int]]:
    """(frames root first, sample count) per line of a collapsed-stacks file.

    Files recorded with ``--threads`` start each stack with ``thread (id): name``;
    ``thread`` keeps only the threads whose root contains it.
    """
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not (stack and count.isdigit()):
            continue
        frames = stack.split(";")
        if thread:
            if not (frames[0].startswith("thread (") and thread in frames[0]):
                continue
            frames = frames[1:] or frames
        stacks.append((frames, int(count)))
    return stacks


def threads(path: Path) -> Counter[str]:
    """Samples per thread root (files recorded with ``--threads``)."""
    out: Counter[str] = Counter()
    for frames, count in load(path):
        if frames[0].startswith("thread ("):
            out[frames[0]] += count
    return out


def summarise(stacks: list[tuple[list[str], int]], needle: str = "") -> tuple[Counter[str], Counter[str], int]:
    """(self samples, inclusive samples, total samples); ``needle`` keeps matching frames only."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if needle in frame:
                inclusive[frame] += count
    return own, inclusive, total


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--filter", default="", help="inclusive view: only frames containing this")
    p.add_argument("--thread", default="", help="only threads whose name contains this")
    args = p.parse_args(argv)
    per_thread = threads(args.file)
    own, inclusive, total = summarise(load(args.file, args.thread), args.filter)
    if not total:
        print("no samples")
        return 1
    if per_thread:
        print("threads")
        for name, n in per_thread.most_common():
            print(f"  {n:6d}  {name}")
        print()
    print(f"{total} samples\n\nself")
    for frame, n in own.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print("\ninclusive")
    for frame, n in inclusive.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
