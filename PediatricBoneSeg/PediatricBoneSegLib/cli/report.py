"""``pbseg report OUTDIR``: gather the case folders of a ``pbseg segment`` output folder into
``OUTDIR/cohort.csv`` and a self-contained ``OUTDIR/cohort.html`` (``io.cohort``,
``io.cohort_page``), both written atomically. A ``cohort.csv`` or ``cohort.html`` that this
command did not write is never replaced. Exit code 0, or 2 when nothing could be written."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CSV_FILE, HTML_FILE = "cohort.csv", "cohort.html"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="gather a batch's case folders into cohort.csv and cohort.html",
        description="Gather every case folder of OUTDIR (report.json, morphometry.csv, qc.png) into "
        "OUTDIR/cohort.csv and a self-contained OUTDIR/cohort.html: one row per case, unfinished and "
        "to-check cases first, QC thumbnails, sortable columns, a volume plot per bone.",
    )
    parser.add_argument("outdir", metavar="OUTDIR", type=Path, help="output folder of pbseg segment")
    parser.add_argument("--title", help="page title (default: the folder's name)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import write_text
    from ..io.cohort import cohort_csv, gather_cohort, status_counts
    from ..io.cohort_page import GENERATOR, cohort_html

    try:
        cases = gather_cohort(args.outdir)
    except NotADirectoryError as error:
        print(f"pbseg report: error: {error}", file=sys.stderr)
        return 2
    if not cases:
        print(f"pbseg report: error: {args.outdir}: holds no case folder", file=sys.stderr)
        return 2
    csv_path, html_path = args.outdir / CSV_FILE, args.outdir / HTML_FILE
    foreign = [
        path
        for path, mark in ((csv_path, "case,status,"), (html_path, f'content="{GENERATOR}"'))
        if path.exists() and mark not in _head(path)
    ]
    if foreign:
        for path in foreign:
            print(
                f"pbseg report: error: {path}: exists and was not written by pbseg report; not replaced",
                file=sys.stderr,
            )
        return 2
    write_text(csv_path, cohort_csv(cases))
    write_text(html_path, cohort_html(cases, args.title or args.outdir.resolve().name))
    print(f"{len(cases)} case folder(s): {status_counts(cases)}")
    print(f"wrote {csv_path}\nwrote {html_path}")
    return 0


def _head(path: Path) -> str:
    """The first 4096 characters of ``path``, where pbseg report's own mark is: read no further
    (an earlier cohort.html holds every case's thumbnail)."""
    with path.open(encoding="utf-8", errors="replace") as stream:
        return stream.read(4096)
