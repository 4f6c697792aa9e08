"""Every input of the bad-input catalogue (``bad_inputs.BAD_INPUTS``) through the real command line:
alone, each gives exit code 1 and error lines that name the file and the problem, no traceback, no
partial or hidden files, and leaves the input as it was; all together in one batch folder with good
cases, every good case is still segmented. ``pbseg validate`` reports the NIfTI ones in a dataset
with the same words, since it uses the same readers."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
from bad_inputs import BAD_INPUTS, BadInput, write_dicom_series, write_image
from test_cli_segment import _scene, _tree, model  # noqa: F401 (model: the knee threshold-model fixture)

from pbseg_training.dataset import write_raw_dataset
from PediatricBoneSegLib.cli import main


def _given(bad: BadInput, path: Path) -> Path:
    """What a user passes: the file, or the DICOM series folder."""
    return path if bad.kind == "file" or path.is_dir() else path.parent


def _everything_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_a_bad_input_alone_is_refused_in_clear_words_and_leaves_nothing(
    name: str,
    tmp_path: Path,
    model: Path,  # noqa: F811 (the fixture imported above)
    capsys: pytest.CaptureFixture,
) -> None:
    bad = BAD_INPUTS[name]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path = bad.make(inputs)
    given = _given(bad, path)
    before = _tree(inputs)
    out = tmp_path / "out"
    code = main(
        ["segment", str(given), "-o", str(out), "--model", str(model), "--joint", "knee", "--precision", "fp32"]
    )
    captured = capsys.readouterr()
    assert code == 1, captured.err
    errors = _errors(captured.err)
    assert errors and all(str(given) in line for line in errors), errors
    assert any(f"{path}: " in line and bad.words in line for line in errors), errors
    assert "Traceback" not in captured.err and "0 case(s) segmented" in captured.out
    assert _everything_in(out) == []  # no case folder, no hidden staging folder
    assert _tree(inputs) == before


@pytest.mark.slow
def test_a_batch_of_every_bad_input_still_segments_the_good_ones(tmp_path: Path, model: Path) -> None:  # noqa: F811
    """One batch folder, run by the installed ``pbseg`` entry point as a user would."""
    batch = tmp_path / "batch"
    batch.mkdir()
    made = {}
    for name, bad in BAD_INPUTS.items():
        folder = batch / f"bad_{len(made):02d}"
        folder.mkdir()
        made[name] = bad.make(folder)
    write_image(_scene(1).image, batch / "good_a.nii.gz")
    write_image(_scene(2).image, batch / "good_b.nrrd")
    write_dicom_series(batch / "good_dicom", echoes=1, slices=6)
    before = _tree(batch)
    out = tmp_path / "out"
    pbseg = Path(sys.executable).with_name("pbseg")
    command = [str(pbseg), "segment", str(batch), "-o", str(out), "--model", str(model), "--joint", "knee"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = _errors(result.stderr)
    for name, path in made.items():
        assert any(f"{path}: " in line and BAD_INPUTS[name].words in line for line in errors), (name, errors)
    assert len(errors) == len(made) + 1  # the corrupt DICOM slice also leaves its series with a gap
    assert "3 case(s) segmented" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["good_a", "good_b", "good_dicom"]  # nothing hidden
    assert _tree(batch) == before


DATASET_IMAGES = [name for name, bad in BAD_INPUTS.items() if bad.kind == "file" and "mha" not in name]


@pytest.mark.parametrize("name", DATASET_IMAGES)
def test_validate_reports_a_bad_dataset_image_with_the_same_words(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The bad file becomes a dataset's image (a .nii is gzipped into the dataset's .nii.gz)."""
    bad = BAD_INPUTS[name]
    made = bad.make(tmp_path)
    scene = _scene(3)
    file_format = "nrrd" if made.suffix == ".nrrd" else "nii.gz"
    root = write_raw_dataset(tmp_path / "knee", "knee", [("case", scene.image, scene.labels)], 1, file_format)
    image = next((root / "imagesTr").iterdir())
    image.write_bytes(gzip.compress(made.read_bytes()) if made.suffix == ".nii" else made.read_bytes())
    assert main(["validate", str(root)]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{image}: ") and bad.words in line for line in printed), printed
