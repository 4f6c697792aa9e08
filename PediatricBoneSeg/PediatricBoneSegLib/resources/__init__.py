"""Files shipped inside the package: the bundled model, the sample knee volume and the Slicer
self-test's small knee case (image and true labels, written by training/scripts/make_self_test_case.py).

They are package data, located through ``importlib.resources``, so a wheel, ``pip install .``, an
editable install and Slicer's scripted-module folder all find them next to this file. Importing
this module needs neither PyTorch nor Slicer (the Slicer panel's Sample button uses it before
PyTorch is installed).
"""

from __future__ import annotations

import atexit
import functools
from contextlib import ExitStack
from importlib.resources import as_file, files
from pathlib import Path

MODEL_FILE = "pediatric_bones.safetensors"
SAMPLE_FILE = "knee_phantom.nii.gz"
SELF_TEST_IMAGE, SELF_TEST_LABELS = "self_test_knee.nii.gz", "self_test_knee_labels.nii.gz"

# Copies extracted from a zipped install live until the interpreter exits.
_extracted = ExitStack()
atexit.register(_extracted.close)


@functools.cache
def resource_path(name: str) -> Path:
    """A real file path of the bundled file ``name`` (safetensors and SimpleITK open files by
    path): the file itself in a directory install; a temporary copy when the package is imported
    from a zip archive. The path of a missing file in a directory install is returned as is."""
    return _extracted.enter_context(as_file(files(__name__) / name))


def bundled_model_path() -> Path:
    """The model shipped with the package (``pediatric_bones.safetensors``)."""
    return resource_path(MODEL_FILE)


def bundled_sample_path() -> Path:
    """The sample volume shipped with the package: a knee phantom (seed 424242, age 9, never used
    for training)."""
    return resource_path(SAMPLE_FILE)


def self_test_case_paths() -> tuple[Path, Path]:
    """The self-test's knee phantom (seed 0, voxel scale 2.5, int16) and its true labels."""
    return resource_path(SELF_TEST_IMAGE), resource_path(SELF_TEST_LABELS)
