"""The public Python API refuses arguments of the wrong type or value at its surface, with one clear
``TypeError``/``ValueError`` naming the argument, not an AttributeError deep inside the pipeline:
``SegmentOptions``, ``segment_image`` and ``PediatricBoneSegLogic.segment`` (on a real MRML scene)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from slicer_harness import MRMLHarness

from PediatricBoneSegLib.options import SegmentOptions
from PediatricBoneSegLib.pipeline.inference import segment_image
from PediatricBoneSegLib.slicer import self_test


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("batch_size", "16", "batch_size must be int, got str '16'"),
        ("batch_size", True, "batch_size must be int, got bool"),
        ("postprocess", "no", "postprocess must be bool, got str 'no'"),
        ("joint", None, "joint must be str, got NoneType"),
        ("device", 0, "device must be str, got int"),
        ("model_path", 3, "model_path must be str or Path or None, got int"),
    ],
)
def test_segment_options_refuse_a_wrong_type_by_name(field: str, value: Any, words: str) -> None:
    with pytest.raises(TypeError, match=words):
        SegmentOptions(**{field: value})


def test_segment_options_say_a_model_folder_is_a_folder(tmp_path: Path) -> None:
    assert SegmentOptions(model_path=tmp_path).problems() == [
        f"model file {tmp_path} is a folder; give the .safetensors file"
    ]


def test_segment_image_refuses_what_is_not_an_image_or_not_options() -> None:
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((8, 16, 16)).astype(np.float32))
    with pytest.raises(TypeError, match="needs a SimpleITK.Image, got ndarray"):
        segment_image(sitk.GetArrayFromImage(image), SegmentOptions())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs a SimpleITK.Image, got str"):
        segment_image("knee.nii.gz", SegmentOptions())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs SegmentOptions, got dict"):
        segment_image(image, {"joint": "knee"})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def volume_and_logic() -> tuple[Any, Any, MRMLHarness]:
    harness = MRMLHarness()
    image, _ = self_test.knee_case()
    volume = self_test.add_volume_node(harness.scene, image, "knee")
    return volume, harness.logic(), harness


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"volumeNode": np.zeros((4, 4, 4))}, TypeError, "volumeNode must be a vtkMRMLScalarVolumeNode, got ndarray"),
        ({"volumeNode": "knee"}, TypeError, "volumeNode must be a vtkMRMLScalarVolumeNode, got str"),
        ({"batchSize": "16"}, TypeError, "batch_size must be int"),
        ({"postprocess": "no"}, TypeError, "postprocess must be bool"),
        ({"surfaces": "no"}, TypeError, "surfaces must be True or False"),
        ({"smoothing": 5}, ValueError, "smoothing must be between 0 and 1, got 5"),
        ({"smoothing": "0.5"}, TypeError, "smoothing must be a number"),
        ({"exportFolder": 3}, TypeError, "exportFolder must be a folder path"),
        ({"joint": "elbow"}, ValueError, "unknown joint 'elbow'"),
    ],
)
def test_logic_segment_refuses_wrong_arguments_and_leaves_the_scene_unchanged(
    volume_and_logic: tuple[Any, Any, MRMLHarness], arguments: dict[str, Any], error: type, words: str
) -> None:
    volume, logic, harness = volume_and_logic
    before = self_test.scene_state(harness.scene)
    with pytest.raises(error, match=words):
        logic.segment(**{"volumeNode": volume, **arguments})
    assert self_test.scene_state(harness.scene) == before
