"""``pbseg compare A B``: the differences of every clinical measurement between two case folders
(the affected and the healthy side, or two visits), printed and written as CSV.

Left and right need no flipping: every measure is defined in the bone's own anatomical frame
(medial, anterior and superior come from the anatomy and the patient axes, never from the image's
x direction), so a left and a right joint of the same shape read the same values
(Testing/test_cli_compare.py compares a knee with its mirror image).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from ..atomic import write_text
from ..io.case_folder import REPORT_FILE

COLUMNS = ("key", "name", "unit", "a", "b", "b_minus_a", "note")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="differences of the clinical measurements of two case folders",
        description="Compare the clinical measurements of two case folders written by pbseg segment "
        "(affected vs healthy side, or two visits): B minus A for every measure.",
    )
    parser.add_argument("a", metavar="A", help="first case folder (reference: the healthy side or the first visit)")
    parser.add_argument("b", metavar="B", help="second case folder")
    parser.add_argument("-o", "--output", metavar="CSV", help="write the comparison here (default: print only)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        first, second = _read(args.a), _read(args.b)
        if first["joint"] != second["joint"]:
            raise ValueError(f"{args.a} is a {first['joint']} and {args.b} a {second['joint']}: nothing to compare")
        if args.output and Path(args.output).exists() and not args.overwrite:
            raise ValueError(f"{args.output} exists (use --overwrite to replace it)")
    except ValueError as error:
        print(f"pbseg compare: error: {error}", file=sys.stderr)
        return 2
    rows = compare(first["measurements"], second["measurements"])
    print(f"{first['joint']}: A = {args.a}, B = {args.b}")
    for row in rows:
        a = "-" if row["a"] == "" else row["a"]
        b = "-" if row["b"] == "" else row["b"]
        change = row["b_minus_a"] if row["b_minus_a"] != "" else row["note"]
        print(f"  {row['name'][:40]:<40} {a:>9} {b:>9}  {change} {row['unit'] if row['b_minus_a'] != '' else ''}")
    if args.output:
        stream = io.StringIO()
        writer = csv.DictWriter(stream, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(args.output, stream.getvalue())
        print(f"written: {args.output}")
    return 0


def compare(a: list[dict], b: list[dict]) -> list[dict]:
    """One row per measure of either case (the report's ``measurements`` entries): both values,
    B minus A, or a note saying which side was not measurable and why."""
    by_key_a, by_key_b = {m["key"]: m for m in a}, {m["key"]: m for m in b}
    rows = []
    for key in [*by_key_a, *(k for k in by_key_b if k not in by_key_a)]:
        first, second = by_key_a.get(key), by_key_b.get(key)
        entry = first or second
        values = [None if m is None else m["value"] for m in (first, second)]
        note = ""
        if values[0] is None or values[1] is None:
            missing = [
                f"{side}: {'absent' if m is None else m['reason']}"
                for side, m, value in (("A", first, values[0]), ("B", second, values[1]))
                if value is None
            ]
            note = "not compared (" + "; ".join(missing) + ")"
        rows.append(
            {
                "key": key,
                "name": entry["name"],
                "unit": entry["unit"],
                "a": "" if values[0] is None else values[0],
                "b": "" if values[1] is None else values[1],
                "b_minus_a": "" if note else round(values[1] - values[0], 3),
                "note": note,
            }
        )
    return rows


def _read(folder: str) -> dict:
    path = Path(folder) / REPORT_FILE
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{folder}: not a case folder ({REPORT_FILE} missing)") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable report ({error})") from None
    if "measurements" not in report or "joint" not in report:
        raise ValueError(f"{path}: no clinical measurements (written by an older pbseg?)")
    return report
