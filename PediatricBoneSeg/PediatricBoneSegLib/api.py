"""The Python API for pipelines: ``segment_file`` segments one volume (a file, a DICOM series
folder or a SimpleITK image) with the one case workflow (``case.run_case``, then
``case.write_case_folder`` when an output folder is given) and returns everything in memory, so a
pipeline does not shell out to ``pbseg segment``. Same options, same validation, same files::

    from PediatricBoneSegLib import segment_file

    result = segment_file("knee.nii.gz", output="out")  # out/knee/ as pbseg segment writes it
    result.labels, result.surfaces, result.measurements, result.report
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import SimpleITK as sitk
import vtk

from .case import CaseResult, report_fields, run_case, write_case_folder
from .image_checks import VolumeReadError, check_volume
from .io.case_folder import REPORT_FILE
from .io.dicom_seg import dicom_seg_sources
from .io.outputs import build_report
from .io.volumes import VolumeSource, discover_sources, read_volume
from .options import CaseOptions, IfExists, SegmentOptions
from .pipeline.measurements import Measurement
from .pipeline.morphometry import BoneMeasurement
from .progress import CancelToken, ProgressCallback, sub_progress


@dataclass
class SegmentedCase:
    """What ``segment_file`` returns. ``case``: the workflow's result (its ``inference`` holds the
    joint, warnings, per-bone quality and timings); ``report``: the content of report.json (also
    when nothing was written); ``folder``: the case folder, None when no output was asked for."""

    name: str
    image: sitk.Image
    case: CaseResult
    report: dict[str, Any]
    folder: Path | None = None

    @property
    def labels(self) -> sitk.Image:
        """UInt8 labels on the input's grid (the catalog's label values of ``joint``)."""
        return self.case.inference.labels

    @property
    def surfaces(self) -> dict[str, vtk.vtkPolyData]:
        """Bone key -> closed mesh in patient LPS millimetres (empty with ``surfaces=False``)."""
        return self.case.surfaces

    @property
    def measurements(self) -> list[BoneMeasurement]:
        """One per bone found (volumes in mm3; see morphometry.csv)."""
        return self.case.measurements

    @property
    def clinical(self) -> list[Measurement]:
        """The joint's clinical measurements (value, or None and the reason; measurements.csv)."""
        return self.case.clinical

    @property
    def joint(self) -> str:
        return self.case.inference.joint

    @property
    def warnings(self) -> list[str]:
        return self.case.inference.warnings

    @property
    def unreliable_bones(self) -> list[str]:
        """Display names of the bones judged unreliable: check them before using them."""
        return self.case.inference.unreliable_bones()


def segment_file(
    source: str | Path | sitk.Image,
    output: str | Path | None = None,
    *,
    joint: str = "auto",
    model: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    postprocess: bool = True,
    surfaces: bool = True,
    smoothing: float = 0.5,
    surface_format: str = "stl",
    dicom_seg: bool | None = None,
    overwrite: bool = False,
    name: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> SegmentedCase:
    """Segment one volume. ``source``: an image file, a folder holding one DICOM series (or one
    image file), or a 3D SimpleITK image (LPS geometry, as SimpleITK reads files). ``output``:
    write the case folder ``output/<name>/`` as ``pbseg segment`` does (``overwrite``: replace an
    earlier pbseg case folder; ``dicom_seg``: as ``--dicom-seg``/``--no-dicom-seg``, default a SEG
    for a DICOM series); None: write nothing. ``name``: the case name (default: from the file or
    folder; "volume" for an image). The other options are ``pbseg segment``'s. Raises
    ``VolumeReadError`` for an unusable input (naming it), ``ValueError`` for invalid options,
    what ``write_case_folder`` raises for an output that may not be written."""
    options = CaseOptions(
        SegmentOptions(joint=joint, model_path=model, device=device, postprocess=postprocess, precision=precision),
        surfaces,
        smoothing,
        surface_format,
    )
    volume = _one_volume(source)
    if isinstance(source, sitk.Image):
        image = sitk.Cast(source, sitk.sitkFloat32)
        check_volume(image, name or "the image")
    else:
        image = read_volume(volume)
    name = name or volume.name
    case = run_case(image, options, progress=sub_progress(progress, 0.0, 0.9 if output else 1.0), cancel=cancel)
    if output is None:
        timings, extra = case.inference.timings, report_fields(case, options)
        report = build_report(name, case.inference, case.measurements, [], timings, extra, case.clinical)
        return SegmentedCase(name, image, case, report)
    inputs = [] if isinstance(source, sitk.Image) else [source]
    folder = write_case_folder(
        output,
        name,
        image,
        case,
        options,
        IfExists.REPLACE if overwrite else IfExists.FAIL,
        inputs=inputs,
        report_extra={"input": str(volume) if inputs else "SimpleITK image"},
        progress=sub_progress(progress, 0.9, 1.0),
        cancel=cancel,
        dicom_seg_sources=dicom_seg_sources(volume, dicom_seg),
    )
    return SegmentedCase(name, image, case, json.loads((folder / REPORT_FILE).read_text(encoding="utf-8")), folder)


def _one_volume(source: str | Path | sitk.Image) -> VolumeSource:
    """The ``VolumeSource`` of ``source`` (a nameless one for an image); a path must hold exactly
    one volume."""
    if isinstance(source, sitk.Image):
        return VolumeSource(Path("."), "volume")
    found = discover_sources(source)
    if found.problems:
        raise found.problems[0]
    if len(found.sources) != 1:
        names = ", ".join(s.name for s in found.sources[:5])
        raise VolumeReadError(source, f"holds {len(found.sources)} volumes ({names}); give one, or use pbseg segment")
    return found.sources[0]
