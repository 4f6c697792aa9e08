"""One case, from a volume to its outputs: the workflow that the command line and the Slicer logic
both run, so that the same volume gives the same labels, meshes, measurements and files.

``run_case``: ``segment_image`` (pipeline.inference) -> ``finish_case``: closed surfaces
(pipeline.surfaces) and measurements (pipeline.morphometry) -> ``write_case_folder``: the case
folder (io.outputs). Front ends differ only in where the volume comes from (a file, a volume node)
and where the results go (the folder; MRML nodes built from the very same meshes). ``CaseOptions``
(``options``) is the one validation of the options, ``write_case_folder`` the one case-naming
policy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk
from vtkmodules.vtkCommonDataModel import vtkPolyData

from .io.case_folder import case_folder_name
from .io.outputs import write_case
from .options import CaseOptions, IfExists
from .pipeline.inference import get_model, segment_image
from .pipeline.measurements import Measurement, measure
from .pipeline.morphometry import BoneMeasurement, measure_bones
from .pipeline.results import InferenceResult
from .pipeline.surfaces import bone_surfaces
from .progress import CancelToken, ProgressCallback, check_cancelled, sub_progress

NETWORK_SHARE = 0.8  # of the progress of run_case; surfaces and measurements share the rest


@dataclass
class CaseResult:
    """``inference``: labels on the input's grid and what the network learned (its ``timings``
    hold every stage, surfaces and measurements included). ``surfaces``: bone key -> closed mesh
    in patient LPS millimetres (empty without surfaces). ``model_file``: the model that ran.
    ``clinical``: the clinical measurements of the joint (``pipeline.measurements``)."""

    inference: InferenceResult
    surfaces: dict[str, vtkPolyData]
    measurements: list[BoneMeasurement]
    model_file: str = ""
    clinical: list[Measurement] = field(default_factory=list)


def run_case(
    image: sitk.Image,
    options: CaseOptions,
    model: Any = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> CaseResult:
    """Segment ``image`` and build its surfaces and measurements: ``segment_case``, then
    ``finish_case``. ``model``: a ``LoadedModel`` (default: ``options.segment.model_path`` or the
    bundled model, cached). Raises ValueError for invalid options or input, ``Cancelled`` when
    ``cancel`` is set."""
    model = model if model is not None else get_model(_checked(options).segment.model_path)
    inference = segment_case(image, options, model, sub_progress(progress, 0.0, NETWORK_SHARE), cancel)
    check_cancelled(cancel)
    return finish_case(inference, options, sub_progress(progress, NETWORK_SHARE, 1.0), str(model.path))


def segment_case(
    image: sitk.Image,
    options: CaseOptions,
    model: Any,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> InferenceResult:
    """The first half of ``run_case``: the labels and what the network learned. A batch runs it
    for one case while the second half, ``finish_case``, runs for the previous one."""
    return segment_image(image, _checked(options).segment, progress, cancel, model)


def _checked(options: CaseOptions) -> CaseOptions:
    if not isinstance(options, CaseOptions):
        raise TypeError(f"run_case needs CaseOptions, got {type(options).__name__}")
    problems = options.problems()
    if problems:
        raise ValueError("invalid options: " + "; ".join(problems))
    return options


def finish_case(
    inference: InferenceResult, options: CaseOptions, progress: ProgressCallback | None = None, model_file: str = ""
) -> CaseResult:
    """The stages after the network, for a label volume from anywhere (the network, or known
    labels in a test): closed surfaces, then measurements (mesh volumes from those surfaces).
    Their timings are added to ``inference.timings``, which the report lists stage by stage."""
    report = sub_progress(progress, 0.0, 1.0)
    surfaces: dict[str, vtkPolyData] = {}
    if options.surfaces:
        report(0.0, "building the bone surfaces")
        begin = time.perf_counter()
        surfaces = bone_surfaces(
            inference.labels, inference.joint, options.smoothing_iterations, boxes=inference.bone_boxes()
        )
        inference.timings["surfaces"] = time.perf_counter() - begin
    report(0.8, "measuring the bones")
    begin = time.perf_counter()
    measurements = measure_bones(inference.labels, inference.joint, surfaces or None, inference.bone_boxes())
    inference.timings["morphometry"] = time.perf_counter() - begin
    report(0.9, "clinical measurements")
    begin = time.perf_counter()
    clinical = measure(inference.labels, inference.joint, inference.quality, inference.bone_boxes())
    inference.timings["clinical_measurements"] = time.perf_counter() - begin
    report(1.0, "case done")
    return CaseResult(inference, surfaces, measurements, model_file, clinical)


def report_fields(case: CaseResult, options: CaseOptions) -> dict[str, Any]:
    """The report.json fields that the case workflow adds to the pipeline's: the model file that
    ran and whether post-processing did."""
    return {"model_file": case.model_file, "postprocess": options.segment.postprocess}


def write_case_folder(
    outdir: str | Path,
    name: str,
    image: sitk.Image,
    case: CaseResult,
    options: CaseOptions,
    if_exists: IfExists = IfExists.FAIL,
    inputs: tuple[str | Path, ...] | list[str | Path] = (),
    report_extra: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    dicom_seg_sources: tuple[str, ...] | None = None,
) -> Path:
    """Write ``OUTDIR/<case_folder_name(name)>/`` (every output file, atomically) and return it.
    ``image``: the input volume (for the QC picture); ``inputs``: the run's input paths, never
    inside a replaced folder; ``report_extra``: more report.json fields (``input``);
    ``dicom_seg_sources``: see ``io.dicom_seg.dicom_seg_sources`` (None: no DICOM SEG)."""
    folder = case_folder_name(name)
    if if_exists is IfExists.NEW_NAME:
        number = 1
        while (Path(outdir) / folder).exists():
            number += 1
            folder = f"{case_folder_name(name)}_{number}"
    extra = {**report_fields(case, options), **(report_extra or {})}
    return write_case(
        outdir,
        folder,
        image,
        case.inference,
        case.surfaces or None,
        case.measurements,
        surface_format=options.surface_format,
        overwrite=if_exists is IfExists.REPLACE,
        report_extra=extra,
        progress=progress,
        cancel=cancel,
        inputs=inputs,
        dicom_seg_sources=dicom_seg_sources,
        clinical=case.clinical,
    )
