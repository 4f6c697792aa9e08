"""``pbseg segment INPUT... -o OUTDIR``: segment volumes (files, DICOM folders, folders of files)
and write one output folder per case. A bad input prints one line and the batch goes on; the exit
code is non-zero when any case failed. A failed or interrupted case (Ctrl-C: exit 130; SIGTERM from a
scheduler or ``kill``: exit 143) leaves no files; a case folder is never written over anything but an
earlier pbseg case folder, and only with ``--overwrite`` (see ``io.case_folder.check_case_target``).
``--skip-existing`` keeps every finished case (``io.case_folder.finished_case``) and redoes the
others; ``--shard I/N`` segments one job's share of the sorted cases (``shards``); DICOM series
inputs also get a DICOM SEG (``io.dicom_seg``)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from ..catalog import JOINT_KEYS, get_joint
from ..io.case_folder import (
    CaseFolderExistsError,
    OutputError,
    case_folder_name,
    check_case_target,
    check_output_root,
    finished_case,
)
from ..io.dicom_seg import dicom_seg_sources
from ..io.volumes import VolumeReadError, VolumeSource, discover_sources, read_volume
from ..options import PRECISIONS, SURFACE_FORMATS, CaseOptions, IfExists, SegmentOptions
from ..progress import CancelToken, check_cancelled
from ..shards import Shard, parse_shard
from ..signals import exit_code, interrupts_as_exceptions
from ..startup import long_lived_imports
from .batch import Done, run_pipelined

if TYPE_CHECKING:
    import SimpleITK as sitk

    from ..network.modelfile import LoadedModel
    from ..pipeline.results import InferenceResult


@dataclass
class CaseSummary:
    case: str
    ok: bool
    joint: str = ""
    bones: str = ""
    warnings: int = 0
    seconds: float = 0.0
    detail: str = ""
    unreliable: tuple[str, ...] = ()  # display names of the bones judged unreliable
    skipped: bool = False  # finished earlier (--skip-existing): kept as it was


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment the bones of joint MR volumes",
        description="Segment the bones of pediatric joint MR volumes. INPUT: NIfTI, NRRD or MHA files, DICOM "
        "series folders, or folders of those (batch). Writes OUTDIR/<case>/ with segmentation.seg.nrrd, "
        "labels.nii.gz, one surface per bone, morphometry.csv, measurements.csv, report.json and qc.png (and "
        "segmentation.dcm, "
        "a DICOM SEG, for a DICOM series). A batch resumes with --skip-existing and splits over the jobs of "
        "a cluster with --shard; pbseg report OUTDIR then gathers it.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, DICOM folder or folder of files")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", type=Path, help="output folder")
    parser.add_argument("--joint", default="auto", choices=("auto", *JOINT_KEYS), help="joint (default: auto-detect)")
    parser.add_argument("--model", metavar="FILE", help="model file (.safetensors; default: the bundled model)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="network arithmetic (default: auto)")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N", help="slices per network pass")
    parser.add_argument("--no-postprocess", action="store_true", help="skip the anatomical post-processing")
    parser.add_argument("--no-surfaces", action="store_true", help="write no surface meshes")
    parser.add_argument("--smoothing", type=float, default=0.5, metavar="S", help="mesh smoothing in [0, 1] (0.5)")
    parser.add_argument("--surface-format", default="stl", choices=SURFACE_FORMATS, help="mesh format (default stl)")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing case folders")
    existing.add_argument(
        "--skip-existing", action="store_true", help="keep finished cases (resume a batch), redo unfinished ones"
    )
    parser.add_argument(
        "--shard",
        type=parse_shard,
        metavar="I/N",
        help="segment job I's share (I from 0) of the sorted cases: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT",
    )
    dicom_seg = parser.add_mutually_exclusive_group()
    dicom_seg.add_argument(
        "--dicom-seg",
        dest="dicom_seg",
        action="store_const",
        const=True,
        help="write a DICOM SEG for every case (default: for DICOM series inputs; other inputs get a new study)",
    )
    dicom_seg.add_argument(
        "--no-dicom-seg", dest="dicom_seg", action="store_const", const=False, help="write no DICOM SEG"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with interrupts_as_exceptions():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    segment = SegmentOptions(
        joint=args.joint,
        model_path=args.model,
        device=args.device,
        postprocess=not args.no_postprocess,
        precision=args.precision,
        batch_size=args.batch_size,
    )
    options = CaseOptions(segment, not args.no_surfaces, args.smoothing, args.surface_format)
    problems = [p for p in options.problems() if not p.startswith("model file")]  # get_model says it better
    try:
        check_output_root(args.output)
    except OutputError as error:
        problems.append(str(error))
    if problems:
        for problem in problems:
            print(f"pbseg segment: error: {problem}", file=sys.stderr)
        return 2
    summaries: list[CaseSummary] = []
    sources: list[VolumeSource] = []
    current = ""
    try:
        for given in args.inputs:
            current = given
            try:
                found = discover_sources(given, exclude=(args.output,))
            except VolumeReadError as error:
                summaries.append(_failed(given, str(error)))
                continue
            sources.extend(found.sources)
            if _reports_problems(args.shard):
                summaries.extend(_failed(str(problem.path), str(problem)) for problem in found.problems)
        # Never replace a folder that holds an input, whatever its case name.
        inputs = [*args.inputs, *(source.path for source in sources)]
        first_of: dict[str, VolumeSource] = {}  # over all cases, so that a shard judges names as the whole run does
        for source in sources:
            first_of.setdefault(case_folder_name(source.name), source)
        batch = _Batch(args, options, inputs, first_of)
        start = time.perf_counter()
        run_pipelined(
            _shard_sources(sources, args.shard),
            batch.prepare,
            batch.compute,
            batch.write,
            _case_failed,
            summaries.append,
            start=batch.load_model,
        )
        batch_seconds = time.perf_counter() - start
    except _ModelUnavailableError as error:
        print(f"pbseg segment: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interruption:
        unfinished = getattr(interruption, "unfinished", None)  # set by the batch: its cases in progress
        if unfinished is None or (not unfinished and not summaries):
            print(f"interrupted: {current or 'the run'} was not written", file=sys.stderr)
            summaries.append(CaseSummary(current, False, detail="interrupted"))
        elif not unfinished:  # the case in progress was written before the interrupt could stop it
            print(
                f"interrupted: {summaries[-1].case} was written to {summaries[-1].detail}; the run stopped there",
                file=sys.stderr,
            )
        for source in unfinished or ():
            print(f"interrupted: {source.name} was not written", file=sys.stderr)
            summaries.append(CaseSummary(source.name, False, detail="interrupted"))
        _print_summary(summaries)
        return exit_code(interruption)
    _print_summary(summaries)
    _print_throughput(summaries, batch_seconds)
    return 0 if summaries and all(summary.ok for summary in summaries) else 1


@dataclass
class _Prepared:
    """A case read and ready to compute: its volume, how its folder may be written, when it began."""

    image: sitk.Image
    target: Path
    if_exists: IfExists
    start: float
    read_seconds: float


class _ModelUnavailableError(Exception):
    """The model file cannot be loaded: the run stops before computing anything (exit 2)."""


@dataclass
class _Batch:
    """What every case of the run shares, and its three stages (``batch.run_pipelined``): prepare on
    the reader thread, compute on the main thread, write on the writer thread. ``load_model`` runs
    while the first case is read."""

    args: argparse.Namespace
    options: CaseOptions
    inputs: list[str | Path]
    first_of: dict[str, VolumeSource]
    model: LoadedModel | None = None

    def load_model(self) -> None:
        """Import what computing and writing need (PyTorch, VTK, matplotlib: seconds, spent while
        the first volume is read) and load the model."""
        with long_lived_imports():
            from .. import case  # noqa: F401  (VTK, matplotlib and the measurements, for every case)
            from ..network.modelfile import ModelFileError
            from ..pipeline.inference import get_model

            try:
                self.model = get_model(self.args.model)
            except (FileNotFoundError, ModelFileError) as error:
                raise _ModelUnavailableError(str(error)) from None

    def prepare(self, source: VolumeSource) -> _Prepared | Done[CaseSummary]:
        """Check the case's name and folder before any work, then read its volume."""
        start = time.perf_counter()
        folder, args = case_folder_name(source.name), self.args
        if self.first_of[folder] is not source:
            raise OutputError(f"{source}: case name {folder} already used by {self.first_of[folder]}")
        target = Path(args.output) / folder
        if args.skip_existing and finished_case(target):
            return Done(CaseSummary(source.name, True, detail=f"{target} (finished earlier: kept)", skipped=True))
        # --skip-existing redoes an unfinished case: it may replace that folder (only a pbseg one), never
        # a folder that did not exist at the start (another run may be writing it: one of the two wins).
        replace = args.overwrite or (args.skip_existing and target.exists())
        check_case_target(args.output, target.name, replace, self.inputs)  # before any work
        image = read_volume(source)
        if_exists = IfExists.REPLACE if replace else IfExists.FAIL
        return _Prepared(image, target, if_exists, start, time.perf_counter() - start)

    def compute(self, source: VolumeSource, prepared: _Prepared) -> InferenceResult:
        """The network half of the case workflow (``case.segment_case``), on the main thread."""
        from ..case import segment_case

        with tqdm(total=100, desc=source.name, unit="%", leave=False, disable=None, file=sys.stderr) as bar:

            def progress(fraction: float, message: str) -> None:
                bar.n = round(100 * fraction)
                bar.set_postfix_str(message, refresh=True)

            inference = segment_case(prepared.image, self.options, self.model, progress)
        inference.timings = {"read": prepared.read_seconds, **inference.timings}
        return inference

    def write(
        self, source: VolumeSource, prepared: _Prepared, inference: InferenceResult, cancel: CancelToken
    ) -> CaseSummary:
        """The case workflow's second half (``case.finish_case``: surfaces, measurements) and the
        case folder, on the writer thread: while the next case's network runs."""
        from ..case import finish_case, write_case_folder

        case = finish_case(inference, self.options, model_file=str(self.model.path))
        check_cancelled(cancel)
        try:
            folder = write_case_folder(
                self.args.output,
                source.name,
                prepared.image,
                case,
                self.options,
                prepared.if_exists,
                inputs=self.inputs,
                report_extra={"input": str(source)},
                cancel=cancel,
                dicom_seg_sources=dicom_seg_sources(source, self.args.dicom_seg),
            )
        except CaseFolderExistsError:
            if self.args.skip_existing and finished_case(prepared.target):
                detail = f"{prepared.target} (finished by another run meanwhile: kept)"
                return CaseSummary(source.name, True, detail=detail, skipped=True)
            raise
        result, measurements = case.inference, case.measurements
        for warning in result.warnings:
            tqdm.write(f"warning: {source.name}: {warning}", file=sys.stderr)
        joint = result.joint + (f" (auto {result.joint_confidence:.2f})" if result.joint_confidence is not None else "")
        return CaseSummary(
            source.name,
            True,
            joint=joint,
            bones=f"{len(measurements)}/{len(get_joint(result.joint).bones)}",
            warnings=len(result.warnings),
            seconds=time.perf_counter() - prepared.start,
            detail=str(folder),
            unreliable=tuple(result.unreliable_bones()),
        )


def _case_failed(source: VolumeSource, error: Exception) -> CaseSummary:
    """A case that could not be read, segmented or written: one line, and the batch goes on."""
    if isinstance(error, (VolumeReadError, OutputError, FileExistsError)):
        return _failed(source.name, str(error))
    return _failed(source.name, f"{source}: {error}")


def _print_throughput(summaries: list[CaseSummary], seconds: float) -> None:
    """Cases segmented per minute of the batch (from its first read to its last write)."""
    segmented = sum(s.ok and not s.skipped for s in summaries)
    if segmented and seconds > 0:
        print(f"{segmented} case(s) in {seconds:.1f} s: {60 * segmented / seconds:.1f} cases per minute")


def _reports_problems(shard: Shard | None) -> bool:
    """Inputs that cannot be segmented are reported once per run: by shard 0 of a sharded run."""
    return shard is None or shard.index == 0


def _shard_sources(sources: list[VolumeSource], shard: Shard | None) -> list[VolumeSource]:
    """The cases this run segments: all, in the order given, or a shard's share of the sorted cases."""
    if shard is None:
        return sources
    return shard.select(sources, key=lambda source: f"{case_folder_name(source.name)}\0{source}")


def _failed(case: str, message: str) -> CaseSummary:
    tqdm.write(f"error: {message}", file=sys.stderr)
    return CaseSummary(case, False, detail=message)


def _print_summary(summaries: list[CaseSummary]) -> None:
    header = ("case", "status", "joint", "bones", "warnings", "seconds", "output / problem")
    rows = [
        (
            s.case,
            _status(s),
            s.joint,
            s.bones,
            str(s.warnings) if s.ok else "",
            f"{s.seconds:.1f}" if s.ok else "",
            s.detail,
        )
        for s in summaries
    ]
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    failed = sum(not s.ok for s in summaries)
    skipped = sum(s.skipped for s in summaries)
    kept = f", {skipped} skipped (finished earlier)" if skipped else ""
    print(f"{len(summaries) - failed - skipped} case(s) segmented, {failed} failed{kept}")
    to_check = [s for s in summaries if _status(s) == "check"]
    if to_check:
        names = [s.case + (f" (unreliable: {', '.join(s.unreliable)})" if s.unreliable else "") for s in to_check]
        print(f"{len(to_check)} case(s) to check (see their warnings): {', '.join(names)}")


def _status(summary: CaseSummary) -> str:
    """A written case with warnings (a missing, implausible or unreliable bone, an unknown-looking
    volume, a forced joint that looks like another) or with a bone whose quality is below the
    model's threshold is not reported as ok: its result may be wrong."""
    if not summary.ok:
        return "FAILED"
    if summary.skipped:
        return "skipped"
    return "check" if summary.warnings or summary.unreliable else "ok"
