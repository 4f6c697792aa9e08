"""``pbseg validate DIR``: list every problem of a raw-layout dataset; non-zero exit if any."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check a raw-layout dataset (imagesTr/, labelsTr/, dataset.json)",
        description="Report every problem of a dataset at once, one line per problem with its file.",
    )
    parser.add_argument("dataset", help="dataset folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pbseg_training.dataset import RawDataset, validate_dataset

    root = Path(args.dataset)
    if not root.is_dir():
        problem = "is a file, not a dataset folder" if root.exists() else "no such folder"
        print(f"pbseg validate: error: {root}: {problem}", file=sys.stderr)
        return 2
    problems = validate_dataset(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.dataset}")
        return 1
    print(f"{args.dataset}: {len(RawDataset(root).cases)} cases, no problems")
    return 0
