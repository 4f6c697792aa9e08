"""A case's labels as a DICOM Segmentation object (``segmentation.dcm``), written with highdicom, so
that a result can go back to PACS and open in OHIF, Slicer (QuantitativeReporting) or any SEG reader.

One segment per bone of the joint, numbered by its catalog label (1..n, as in ``labels.nii.gz``),
with its SNOMED CT code, its recommended display colour and the algorithm that made it (pbseg, the
model's name and version); a bone judged unreliable says so in its segment label, a case with
warnings in the content description ("CHECK (n warnings): ..."). For a DICOM
series input the SEG joins the source study (its Study and Frame of Reference UIDs, the patient)
and references the source series, frame by frame; for a NIfTI/NRRD input it starts a new study with
a new Frame of Reference and references no image (there is no DICOM image to reference). Either
way it is a new series (fresh Series and SOP Instance UIDs).

highdicom and pydicom are imported by ``write_dicom_seg`` only: the case-folder modules stay light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..catalog import ANATOMICAL_STRUCTURE_CODE, SNOMED_SCHEME, get_joint

if TYPE_CHECKING:
    import pydicom

    from ..pipeline.results import InferenceResult
    from .volumes import VolumeSource

DICOM_SEG_FILE = "segmentation.dcm"
SOFTWARE = "PediatricBoneSeg"
SERIES_NUMBER = 900  # of the SEG series: apart from the scanner's usual 1..99
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def dicom_seg_sources(source: VolumeSource, wanted: bool | None = None) -> tuple[str, ...] | None:
    """Whether a case gets a DICOM SEG and what it references, for every front end: ``wanted``
    None (the default) gives one to a DICOM series input, True to any input (a new study when it
    is no DICOM series), False to none. Returns the files to reference, or None for no SEG."""
    if wanted is False or (wanted is None and not source.dicom_files):
        return None
    return source.dicom_files


def write_dicom_seg(
    result: InferenceResult, path: str | Path, source_files: Sequence[str | Path] = (), case: str = ""
) -> Path:
    """Write ``result.labels`` as a binary DICOM SEG at ``path``. ``source_files``: the DICOM slice
    files the labels were segmented from (the series the SEG references; empty: a new study);
    ``case``: the case name, for the content description. Raises ValueError when the source
    files are not the labels' grid."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    labels = result.labels
    sources = [pydicom.dcmread(str(file), stop_before_pixels=True) for file in source_files]
    new_study = not sources
    if new_study:
        sources = [_new_study_template(labels)]
    positions = _plane_positions(labels, sources if not new_study else [], source_files)
    direction = np.reshape(labels.GetDirection(), (3, 3))
    spacing = labels.GetSpacing()
    geometry = {
        "plane_positions": [hd.PlanePositionSequence("PATIENT", position) for position in positions],
        "plane_orientation": hd.PlaneOrientationSequence("PATIENT", [*direction[:, 0], *direction[:, 1]]),
        # PixelSpacing is (between rows, between columns): y then x
        "pixel_measures": hd.PixelMeasuresSequence((spacing[1], spacing[0]), spacing[2], spacing[2]),
    }
    unreliable = {key for key, quality in result.quality.items() if not quality.reliable}
    algorithm = hd.AlgorithmIdentificationSequence(
        name=SOFTWARE,
        family=codes.cid7162.ArtificialIntelligence,
        version=__version__,
        parameters={"model": result.model_name, "model version": result.model_version},
    )
    category = hd.sr.CodedConcept(ANATOMICAL_STRUCTURE_CODE[0], SNOMED_SCHEME, ANATOMICAL_STRUCTURE_CODE[1])
    segments = [
        hd.seg.SegmentDescription(
            segment_number=label,
            segment_label=bone.display_name + (" (unreliable)" if bone.key in unreliable else ""),
            segmented_property_category=category,
            segmented_property_type=hd.sr.CodedConcept(bone.snomed_code, SNOMED_SCHEME, bone.display_name),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*bone.color),
        )
        for label, bone in enumerate(get_joint(result.joint).bones, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=sitk.GetArrayFromImage(labels).astype(np.uint8),  # (slice, row, column) label values
        **geometry,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=SOFTWARE,
        manufacturer_model_name=result.model_name or SOFTWARE,
        software_versions=[f"{SOFTWARE} {__version__}", f"model {result.model_version}"],
        device_serial_number="0",
        content_description=_content_description(result, case),
        content_label="BONES",
        series_description=f"{SOFTWARE} {result.joint} bones"[:64],
    )
    # highdicom copies the source's pixel measures when their pixel spacing matches, SpacingBetweenSlices
    # included, which some writers get wrong (SimpleITK writes 1): the frames' true spacing instead.
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    measures.SpacingBetweenSlices = pydicom.valuerep.DS(spacing[2], auto_format=True)  # at most 16 characters
    if new_study:
        _drop_references(seg)
    seg.save_as(str(path), enforce_file_format=True)
    return Path(path)


def _content_description(result: InferenceResult, case: str) -> str:
    """What a PACS list shows of the SEG (64 characters at most): the joint and case, after a CHECK
    with the number of warnings when the result may be wrong (they are in report.json)."""
    check = f"CHECK ({len(result.warnings)} warnings): " if result.warnings else ""
    return f"{check}{get_joint(result.joint).display_name} bones of {case}"[:64]


def _plane_positions(
    labels: sitk.Image, sources: Sequence[pydicom.Dataset], source_files: Sequence[str | Path]
) -> list[list[float]]:
    """Patient position (LPS mm) of the first voxel of each slice of ``labels``. Slice k of a DICOM
    input is source file k (``read_volume`` stacks them in that order): its ImagePositionPatient
    is taken as written, so that each SEG frame matches its source image exactly (highdicom then
    references it), after checking that it is where the labels' grid puts it. A single multi-frame
    source (enhanced MR) gets the labels' own positions: highdicom matches its frames to them."""
    computed = [list(labels.TransformIndexToPhysicalPoint((0, 0, k))) for k in range(labels.GetSize()[2])]
    for file, source in zip(source_files, sources):
        if "FrameOfReferenceUID" not in source:
            raise ValueError(
                f"{file}: no FrameOfReferenceUID, so a DICOM SEG cannot refer to it (--no-dicom-seg: none)"
            )
    if not sources or (len(sources) == 1 and int(sources[0].get("NumberOfFrames", 1)) > 1):
        return computed
    if len(sources) != len(computed):
        raise ValueError(f"{len(sources)} DICOM source files for {len(computed)} label slices")
    tolerance = 0.01 * min(labels.GetSpacing())
    positions = []
    for file, source, expected in zip(source_files, sources, computed):
        position = [float(value) for value in source.get("ImagePositionPatient", [])]
        if len(position) != 3 or np.linalg.norm(np.subtract(position, expected)) > tolerance:
            raise ValueError(f"{file}: its ImagePositionPatient is not the position of its slice of the labels")
        positions.append(position)
    return positions


def _new_study_template(labels: sitk.Image) -> pydicom.Dataset:
    """The attributes a SEG copies from its source, for a volume that has no DICOM source: a new
    study (created now, by this run) and Frame of Reference, an unknown patient (empty Type 2
    attributes, never invented)."""
    import datetime

    import highdicom as hd
    import pydicom

    template = pydicom.Dataset()
    template.SOPClassUID = MR_IMAGE_STORAGE
    template.SOPInstanceUID = hd.UID()
    template.StudyInstanceUID = hd.UID()
    template.SeriesInstanceUID = hd.UID()
    template.FrameOfReferenceUID = hd.UID()
    template.Modality = "MR"
    for keyword in (
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
        "ReferringPhysicianName",
    ):  # fmt: skip
        setattr(template, keyword, "")
    now = datetime.datetime.now()
    template.StudyDate, template.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    template.Rows, template.Columns = labels.GetSize()[1], labels.GetSize()[0]
    direction = np.reshape(labels.GetDirection(), (3, 3))
    template.ImageOrientationPatient = [*direction[:, 0], *direction[:, 1]]
    template.ImagePositionPatient = list(labels.GetOrigin())
    template.PixelSpacing = [labels.GetSpacing()[1], labels.GetSpacing()[0]]
    template.SliceThickness = labels.GetSpacing()[2]
    return template


def _drop_references(seg: pydicom.Dataset) -> None:
    """Remove the references to the template of a new study: no such image exists anywhere."""
    for keyword in ("ReferencedSeriesSequence", "SourceImageSequence"):
        if keyword in seg:
            delattr(seg, keyword)
    for frame in seg.get("PerFrameFunctionalGroupsSequence", []):
        if "DerivationImageSequence" in frame:
            del frame.DerivationImageSequence
