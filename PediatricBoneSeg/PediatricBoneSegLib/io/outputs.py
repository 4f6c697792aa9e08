"""The per-case output folder ``OUTDIR/<case>/``, written atomically and never over a user's files.

Everything is written into a hidden staging folder beside the target, which is renamed into place
only when complete: a failed or cancelled case leaves no files. An existing case folder is replaced
only with ``overwrite``, and only when it is a case folder pbseg wrote (its ``report.json`` lists
every file in it) and holds no input of the run; anything else is refused before any work is done
and checked again at the final move. Two runs finishing the same case at once: exactly one wins,
the other gets ``CaseFolderExistsError`` (see ``atomic``).
"""

from __future__ import annotations

import csv
import datetime
import json
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import SimpleITK as sitk
from vtkmodules.vtkCommonDataModel import vtkPolyData
from vtkmodules.vtkIOCore import vtkWriter
from vtkmodules.vtkIOGeometry import vtkOBJWriter, vtkSTLWriter
from vtkmodules.vtkIOPLY import vtkPLYWriter
from vtkmodules.vtkIOXML import vtkXMLPolyDataWriter

from .. import __version__
from ..atomic import place_folder, replace_folder, staging_folder
from ..catalog import get_joint
from ..options import SURFACE_FORMATS
from ..pipeline.measurements import Measurement, measure
from ..pipeline.morphometry import COLUMNS, BoneMeasurement
from ..pipeline.results import InferenceResult
from ..progress import CancelToken, ProgressCallback, check_cancelled
from ..signals import deferred_interrupts
from .case_folder import (
    MEASUREMENTS_FILE,
    MORPHOMETRY_FILE,
    QC_FILE,
    REPORT_FILE,
    CaseFolderExistsError,
    check_case_target,
)
from .dicom_seg import DICOM_SEG_FILE, write_dicom_seg
from .qc import write_qc_png
from .segmentation_file import write_segmentation_nrrd

SEGMENTATION_FILE = "segmentation.seg.nrrd"
LABELS_FILE = "labels.nii.gz"


def write_case(
    outdir: str | Path,
    case: str,
    image: sitk.Image,
    result: InferenceResult,
    surfaces: dict[str, vtkPolyData] | None,
    measurements: list[BoneMeasurement],
    surface_format: str = "stl",
    overwrite: bool = False,
    report_extra: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    inputs: Sequence[str | Path] = (),
    dicom_seg_sources: Sequence[str | Path] | None = None,
    clinical: list[Measurement] | None = None,
) -> Path:
    """Write all outputs of one case and return its folder. ``image``: the input volume (for the
    QC picture); ``report_extra``: more report.json fields (input path, model file, timings of
    stages run outside the pipeline); ``inputs``: the run's input paths, never inside a replaced
    folder; ``dicom_seg_sources``: write a DICOM SEG too, referencing these DICOM files (the
    input series; empty: a SEG of a new study), None: no SEG; ``clinical``: the case's clinical
    measurements (None: measured here from ``result``). Raises what ``check_case_target``
    raises (before writing and again at the final move); ``Cancelled`` when ``cancel`` is set
    (checked as files complete). A ``KeyboardInterrupt`` that arrives once the folder is in place
    carries it as ``written_folder``."""
    if surface_format not in SURFACE_FORMATS:
        raise ValueError(f"unknown surface format {surface_format!r} ({', '.join(SURFACE_FORMATS)})")
    target = check_case_target(outdir, case, overwrite, inputs)
    start = time.perf_counter()
    staging: Path | None = None
    placed = False
    try:
        # A signal between creating the staging folder and knowing its name would leak it.
        with deferred_interrupts():
            staging = staging_folder(target)
        clinical = (
            measure(result.labels, result.joint, result.quality, result.bone_boxes()) if clinical is None else clinical
        )
        files = [
            (SEGMENTATION_FILE, lambda p: write_segmentation_nrrd(result.labels, result.joint, p, result.bone_boxes())),
            (LABELS_FILE, lambda p: sitk.WriteImage(result.labels, str(p), useCompression=True)),
            *(
                (f"{bone}.{surface_format}", lambda p, mesh=mesh: write_surface(mesh, p))
                for bone, mesh in (surfaces or {}).items()
            ),
            (MORPHOMETRY_FILE, lambda p: write_morphometry_csv(measurements, p)),
            (MEASUREMENTS_FILE, lambda p: write_measurements_csv(clinical, p)),
            *(
                [(DICOM_SEG_FILE, lambda p: write_dicom_seg(result, p, dicom_seg_sources, case))]
                if dicom_seg_sources is not None
                else []
            ),
        ]
        check_cancelled(cancel)
        # The files are written by one worker thread (compression and VTK writers release the GIL)
        # while this thread draws the QC picture: its offscreen OpenGL context stays on the caller's
        # thread, as VTK rendering requires.
        with ThreadPoolExecutor(max_workers=1) as pool:
            try:
                # Held back while the pool starts its thread: interrupted before the pool registers it,
                # the shutdown below would not wait for it, and it would write into the removed folder.
                with deferred_interrupts():
                    pending = {pool.submit(write, staging / name): name for name, write in files}
                if progress is not None:
                    progress(0.0, f"writing {QC_FILE}")
                write_qc_png(
                    image, result.labels, result.joint, surfaces, staging / QC_FILE, title=case, measurements=clinical
                )
                for done, future in enumerate(as_completed(pending), start=1):
                    future.result()
                    if progress is not None:  # from this thread only: Slicer's GUI is not thread-safe
                        progress(done / (len(pending) + 1), f"wrote {pending[future]}")
                    check_cancelled(cancel)
            except BaseException:
                # Nothing may write into staging after this, even if another signal arrives meanwhile.
                with deferred_interrupts():
                    pool.shutdown(wait=True, cancel_futures=True)
                raise
        timings = {**result.timings, "write": time.perf_counter() - start}
        files_written = [name for name, _ in files] + [QC_FILE, REPORT_FILE]
        report = build_report(case, result, measurements, files_written, timings, report_extra, clinical)
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        # A signal is held back until the move is over and known to be over, so what the caller
        # is told (written or not) is true.
        with deferred_interrupts():
            _move_into_place(staging, target, overwrite, inputs)
            placed = True
    except BaseException as error:
        if not placed and staging is not None:
            with deferred_interrupts():  # a second signal must not stop the clean-up half-way
                shutil.rmtree(staging, ignore_errors=True)
        elif isinstance(error, KeyboardInterrupt):
            error.written_folder = target  # type: ignore[attr-defined]
        raise
    if progress is not None:
        progress(1.0, "written")
    return target


def build_report(
    case: str,
    result: InferenceResult,
    measurements: list[BoneMeasurement],
    files: list[str],
    timings: dict[str, float],
    extra: dict[str, Any] | None = None,
    clinical: list[Measurement] | None = None,
) -> dict[str, Any]:
    """The content of report.json; ``clinical``: the clinical measurements (its ``measurements``
    block, each with value or reason, definition, reference and landmarks)."""
    spec = get_joint(result.joint)
    by_bone = {m.bone: m for m in measurements}
    labels = result.labels
    return {
        "case": case,
        "joint": result.joint,
        "joint_auto_detected": result.auto_detected,
        "joint_confidence": None if result.joint_confidence is None else round(result.joint_confidence, 4),
        "joint_probabilities": {k: round(v, 4) for k, v in result.joint_probabilities.items()},
        "joint_embedding_distances": {k: round(v, 4) for k, v in result.joint_distances.items()},
        "joint_novelty": None if result.joint_novelty is None else round(result.joint_novelty, 4),
        "warnings": list(result.warnings),
        "bones": {
            bone.key: {
                "display_name": bone.display_name,
                "label": spec.label_of(bone.key),
                "present": bone.key in by_bone,
                "voxel_volume_mm3": round(by_bone[bone.key].voxel_volume_mm3, 3) if bone.key in by_bone else 0.0,
                "mesh_volume_mm3": _rounded(by_bone[bone.key].mesh_volume_mm3) if bone.key in by_bone else None,
                **_quality_fields(result, bone.key),
            }
            for bone in spec.bones
        },
        "unreliable_bones": result.unreliable_bones(),
        "measurements": [m.to_json() for m in clinical or []],
        "model": {"name": result.model_name, "version": result.model_version},
        "device": result.device,
        "precision": result.precision,
        "timings_s": {stage: round(seconds, 4) for stage, seconds in timings.items()},
        "geometry": {
            "size": list(labels.GetSize()),
            "spacing_mm": list(labels.GetSpacing()),
            "origin_mm": list(labels.GetOrigin()),
            "direction": list(labels.GetDirection()),
        },
        "files": files,
        "pbseg_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }


def write_surface(mesh: vtkPolyData, path: str | Path) -> Path:
    """Write a mesh in the format of the file extension (.stl binary, .obj, .vtp, .ply binary).
    Coordinates are LPS millimetres; STL headers say so, as Slicer's do."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix == "stl":
        writer: vtkWriter = vtkSTLWriter()
        writer.SetFileTypeToBinary()
        writer.SetHeader("SPACE=LPS")
    elif suffix == "obj":
        writer = vtkOBJWriter()
    elif suffix == "vtp":
        writer = vtkXMLPolyDataWriter()
        writer.SetDataModeToBinary()
    elif suffix == "ply":
        writer = vtkPLYWriter()
        writer.SetFileTypeToBinary()
    else:
        raise ValueError(f"{path}: unknown surface format ({', '.join(SURFACE_FORMATS)})")
    writer.SetInputData(mesh)
    writer.SetFileName(str(path))
    if writer.Write() != 1:
        raise OSError(f"{path}: the surface could not be written")
    return path


def write_morphometry_csv(measurements: list[BoneMeasurement], path: str | Path) -> Path:
    with Path(path).open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        for measurement in measurements:
            writer.writerow(measurement.as_row())
    return Path(path)


MEASUREMENT_COLUMNS = ("key", "name", "value", "unit", "text", "status", "reason", "definition", "reference")


def write_measurements_csv(measurements: list[Measurement], path: str | Path) -> Path:
    """One row per clinical measurement (``MEASUREMENT_COLUMNS``): an empty value where not
    measurable, with the reason."""
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=MEASUREMENT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for m in measurements:
            writer.writerow({**m.to_json(), "value": "" if m.value is None else f"{m.value:.3f}"})
    return Path(path)


def _move_into_place(staging: Path, target: Path, overwrite: bool, inputs: Sequence[str | Path]) -> None:
    """The final move, after checking the target again: it may have changed during the run."""
    check_case_target(target.parent, target.name, overwrite, inputs)
    try:
        if target.exists():
            replace_folder(staging, target)
        else:
            place_folder(staging, target)
    except FileExistsError:
        raise CaseFolderExistsError(
            f"{target}: output folder was written by another run meanwhile (use --overwrite to replace it)"
        ) from None


def _quality_fields(result: InferenceResult, bone: str) -> dict[str, Any]:
    """A bone's ``quality`` (0-1), ``reliable`` and the evidence behind them; None without network
    evidence (labels given, not predicted)."""
    quality = result.quality.get(bone)
    if quality is None:
        return {"quality": None, "reliable": None}
    return {
        "quality": round(quality.score, 4),
        "reliable": quality.reliable,
        "quality_evidence": {name: round(value, 4) for name, value in quality.features.items()},
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
