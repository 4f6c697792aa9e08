"""``pbseg validate DIR``: list every problem of a raw-layout dataset; non-zero exit if any."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check a raw-layout dataset (imagesTr/, labelsTr/, dataset.json)",
        description="Report every problem of a dataset at once, one line per problem with its file.",
    )
    parser.add_argument("dataset", help="dataset folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..dataset import RawDataset, validate_dataset

    problems = validate_dataset(args.dataset)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.dataset}")
        return 1
    print(f"{args.dataset}: {len(RawDataset(args.dataset).cases)} cases, no problems")
    return 0
