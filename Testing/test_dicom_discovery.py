"""Finding the volumes of a batch folder: a bad DICOM series or file is one problem among good
cases, case names are unique and stable, and pbseg's own outputs are never taken as inputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from bad_inputs import SERIES_UID, _volume, write_dicom_series, write_image

from PediatricBoneSegLib.io.volumes import VolumeReadError, discover_sources, read_volume


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(_volume(), path)


def _problems(discovery) -> dict[str, str]:
    return {str(problem.path): problem.problem for problem in discovery.problems}


def _duplicate_positions(folder: Path) -> None:
    """A series whose slices were exported twice: same UID, same positions."""
    write_dicom_series(folder, echoes=1)
    write_dicom_series(folder, echoes=1, prefix="COPY")


def test_one_bad_series_does_not_stop_the_good_ones(tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    write_dicom_series(batch / "good", echoes=1)
    _duplicate_positions(batch / "duplicated")
    write_dicom_series(batch / "no_position", echoes=1)
    broken = batch / "no_position" / "IM_3_1_2.dcm"
    dataset = pydicom.dcmread(broken)
    del dataset.ImagePositionPatient
    dataset.save_as(broken)
    _image(batch / "a.nii.gz")

    discovery = discover_sources(batch)
    assert [source.name for source in discovery.sources] == ["a", "good"]
    problems = _problems(discovery)
    assert set(problems) == {str(batch / "duplicated"), str(broken)}
    assert "same slice position" in problems[str(batch / "duplicated")]
    assert problems[str(broken)] == "DICOM file without a usable image position/orientation"
    for source in discovery.sources:
        assert read_volume(source).GetSize()[2] == 5 if source.dicom_files else True


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_dicom_file_is_named_as_such(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "knee"
    write_dicom_series(folder, echoes=1, slices=6)
    bad = folder / "IM_3_1_2.dcm"
    data = bad.read_bytes()
    bad.write_bytes(b"\0" * 200 + b"not DICOM" if damage == "garbage" else data[: len(data) - 60])
    (folder / "README.txt").write_text("exported from the scanner")  # not DICOM: no problem
    problems = _problems(discover_sources(folder))
    assert problems == {
        str(bad): "not a readable DICOM file (corrupt or truncated)",
        str(folder): f"DICOM series knee ({SERIES_UID}) has uneven slice gaps (missing slices?)",
    }


def test_series_with_the_same_number_get_unique_stable_names(tmp_path: Path) -> None:
    folder = tmp_path / "mr"
    write_dicom_series(folder, echoes=1, series_uid=SERIES_UID + ".1", series_number=3, prefix="A")
    write_dicom_series(folder, echoes=1, series_uid=SERIES_UID + ".2", series_number=3, prefix="B")
    write_dicom_series(folder, echoes=2, series_uid=SERIES_UID + ".3", series_number=7, prefix="C")
    names = [source.name for source in discover_sources(folder).sources]
    assert len(set(names)) == len(names) == 4
    same_number = sorted(name for name in names if name.startswith("mr_series3_"))
    assert len(same_number) == 2 and all(len(name) == len("mr_series3_") + 6 for name in same_number)
    assert sorted(name for name in names if name.startswith("mr_series7")) == ["mr_series7_echo1", "mr_series7_echo2"]
    assert [source.name for source in discover_sources(folder).sources] == names  # same names every run
    for source in discover_sources(folder).sources:
        read_volume(source)


def test_same_file_names_in_two_subfolders_get_unique_names(tmp_path: Path) -> None:
    _image(tmp_path / "batch" / "left" / "knee.nii.gz")
    _image(tmp_path / "batch" / "right" / "knee.nii.gz")
    _image(tmp_path / "batch" / "right" / "ankle.nii.gz")
    names = [source.name for source in discover_sources(tmp_path / "batch").sources]
    assert len(set(names)) == 3 and "ankle" in names and all(name.startswith(("knee_", "ankle")) for name in names)
    assert [source.name for source in discover_sources(tmp_path / "batch").sources] == names


def test_outputs_inside_the_input_folder_are_not_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    _image(data / "knee.nii.gz")
    write_dicom_series(data / "dicom", echoes=1)
    case = data / "out" / "knee"  # a finished case of `pbseg segment data -o data/out`
    _image(case / "labels.nii.gz")
    (case / "report.json").write_text("{}")
    staging = data / "out" / ".ankle.partial-1a2b"  # a concurrent run still writing
    _image(staging / "labels.nii.gz")
    _image(data / "results" / "extra.nii.gz")  # the output root of this run, no report yet
    monkeypatch.chdir(tmp_path)
    discovery = discover_sources("data", exclude=[tmp_path / "data" / "results"])
    assert [source.name for source in discovery.sources] == ["knee", "dicom"]
    assert discovery.problems == []
    # given as written on a command line: relative and with a trailing slash
    assert [s.name for s in discover_sources(data, exclude=["data/results/"]).sources] == ["knee", "dicom"]
    with pytest.raises(VolumeReadError, match="is a pbseg output folder"):
        discover_sources(case)


def test_folder_names_come_from_the_resolved_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "knee_t1"
    write_dicom_series(folder, echoes=1)
    write_dicom_series(folder / "sub", echoes=2)
    monkeypatch.chdir(folder)
    assert [source.name for source in discover_sources(".").sources] == ["knee_t1", "sub_echo1", "sub_echo2"]
    monkeypatch.chdir(folder / "sub")
    assert discover_sources("..").sources[0].name == "knee_t1"
    assert [source.name for source in discover_sources(".").sources] == ["sub_echo1", "sub_echo2"]


def test_a_tilted_stack_is_refused_not_straightened(tmp_path: Path) -> None:
    folder = tmp_path / "tilted"
    write_dicom_series(folder, echoes=1, drift=0.5)  # 0.5 mm along x per 2.5 mm slice: 11.31 degrees
    files = sorted(str(f) for f in folder.iterdir())
    straightened = sitk.ReadImage(files)
    np.testing.assert_allclose(straightened.GetDirection(), np.eye(3).ravel())  # ITK drops the tilt
    discovery = discover_sources(folder)
    assert discovery.sources == []
    assert _problems(discovery)[str(folder)].startswith(
        f"DICOM series tilted ({SERIES_UID}) is a tilted stack (slices shifted in-plane: shear of 11.31 degrees"
    )
    write_dicom_series(tmp_path / "straight", echoes=1, drift=0.0)
    assert len(discover_sources(tmp_path / "straight").sources) == 1


def test_only_an_unusable_path_itself_raises(tmp_path: Path) -> None:
    with pytest.raises(VolumeReadError, match="no such file or folder"):
        discover_sources(tmp_path / "absent")
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    _image(tmp_path / "empty" / ".hidden" / "a.nii.gz")
    with pytest.raises(VolumeReadError, match="holds no DICOM series and no NIfTI"):
        discover_sources(tmp_path / "empty")
    _duplicate_positions(tmp_path / "only_bad")
    discovery = discover_sources(tmp_path / "only_bad")  # a problem found: reported, not raised
    assert discovery.sources == [] and len(discovery.problems) == 1


def test_an_unreadable_subfolder_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder the user may not read is one problem, the rest is found. Root reads every folder, so
    as root (CI) listing the locked folder is made to fail as it would for a user."""
    _image(tmp_path / "batch" / "a.nii.gz")
    locked = tmp_path / "batch" / "locked"
    locked.mkdir()
    locked.chmod(0)
    if os.geteuid() == 0:
        real_scandir = os.scandir

        def scandir(path: Any = ".") -> Any:
            if Path(path) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
    try:
        discovery = discover_sources(tmp_path / "batch")
    finally:
        locked.chmod(0o755)
    assert [s.name for s in discovery.sources] == ["a"] and list(_problems(discovery)) == [str(locked)]
