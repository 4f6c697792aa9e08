"""``pbseg compare A B`` on case folders written from generator-2.0 true labels: a knee against its
exact mirror image (a left knee of the same shape) differs by nothing, against another knee by the
difference of the two reports; absent measures are noted, mismatched joints and a taken output
refused. Small phantom (voxel_scale 1.5)."""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pbseg_training.phantoms import generate_phantom
from PediatricBoneSegLib.cli import main as pbseg
from PediatricBoneSegLib.io.outputs import write_case
from PediatricBoneSegLib.pipeline.results import InferenceResult


def mirrored(image: sitk.Image) -> sitk.Image:
    """``image`` reflected across the patient's mid-sagittal plane (x -> -x), slices reversed so the
    grid stays right-handed."""
    array = sitk.GetArrayFromImage(image)[::-1]
    direction = np.array(image.GetDirection()).reshape(3, 3)
    flip = np.diag([-1.0, 1.0, 1.0])
    last_slice = np.asarray(image.GetOrigin()) + direction[:, 2] * image.GetSpacing()[2] * (image.GetSize()[2] - 1)
    out = sitk.GetImageFromArray(np.ascontiguousarray(array))
    out.SetSpacing(image.GetSpacing())
    out.SetOrigin(tuple(flip @ last_slice))
    out.SetDirection(tuple((flip @ direction @ np.diag([1.0, 1.0, -1.0])).flatten()))
    return out


@cache
def knee(seed: int):
    return generate_phantom("knee", seed, voxel_scale=1.5)


def write(outdir: Path, name: str, image: sitk.Image, labels: sitk.Image, joint: str = "knee") -> Path:
    result = InferenceResult(labels, joint, False, None, [], {}, "truth", "0")
    return write_case(outdir, name, image, result, None, [])


def rows(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as stream:
        return {row["key"]: row for row in csv.DictReader(stream)}


def test_a_knee_and_its_mirror_image_read_the_same(tmp_path: Path, capsys) -> None:
    phantom = knee(9)
    a = write(tmp_path, "right", phantom.image, phantom.labels)
    b = write(tmp_path, "left", mirrored(phantom.image), mirrored(phantom.labels))
    assert pbseg(["compare", str(a), str(b), "-o", str(tmp_path / "cmp.csv")]) == 0
    table = rows(tmp_path / "cmp.csv")
    compared = [row for row in table.values() if row["b_minus_a"] != ""]
    assert len(compared) >= 10  # every joint measure and the open plates
    for row in compared:  # marching cubes on the reversed slices: areas agree to 0.2 %
        assert abs(float(row["b_minus_a"])) <= 0.05 + 2e-3 * abs(float(row["a"])), row
    assert "TT-TG distance" in capsys.readouterr().out


def test_differences_of_two_knees_and_the_refusals(tmp_path: Path, capsys) -> None:
    first, second = knee(9), knee(5)
    a = write(tmp_path, "visit1", first.image, first.labels)
    b = write(tmp_path, "visit2", second.image, second.labels)
    output = tmp_path / "cmp.csv"
    assert pbseg(["compare", str(a), str(b), "-o", str(output)]) == 0
    table = rows(output)
    reports = [{m["key"]: m for m in json.loads((f / "report.json").read_text())["measurements"]} for f in (a, b)]
    for key, row in table.items():
        va, vb = reports[0][key]["value"], reports[1][key]["value"]
        if va is None or vb is None:
            assert row["b_minus_a"] == "" and "not compared" in row["note"]
        else:
            assert float(row["b_minus_a"]) == pytest.approx(vb - va, abs=1e-3)
    assert any(row["note"] for row in table.values())  # e.g. an epiphysis cut in one of them
    assert pbseg(["compare", str(a), str(b), "-o", str(output)]) == 2  # taken: never replaced silently
    assert "exists" in capsys.readouterr().err
    shoulder = generate_phantom("shoulder", 1, voxel_scale=3.0)
    c = write(tmp_path, "shoulder", shoulder.image, shoulder.labels, "shoulder")
    assert pbseg(["compare", str(a), str(c)]) == 2
    assert "nothing to compare" in capsys.readouterr().err
    assert pbseg(["compare", str(a), str(tmp_path)]) == 2
    assert "not a case folder" in capsys.readouterr().err
