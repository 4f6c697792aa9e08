"""Write the Slicer self-test's knee case into the package data (PediatricBoneSegLib/resources/):
a small knee phantom (seed 0, voxel scale 2.5) stored as int16 and its true labels. The Slicer
module ships no phantom generator, so its self-test reads these two files.

    .venv/bin/python training/scripts/make_self_test_case.py
"""

from __future__ import annotations

import SimpleITK as sitk

from pbseg_training.phantoms import generate_phantom
from PediatricBoneSegLib.resources import SELF_TEST_IMAGE, SELF_TEST_LABELS, resource_path


def main() -> None:
    phantom = generate_phantom("knee", seed=0, voxel_scale=2.5)
    image = sitk.Cast(sitk.Round(phantom.image), sitk.sitkInt16)  # MR-like integers: a quarter of the size
    sitk.WriteImage(image, str(resource_path(SELF_TEST_IMAGE)), useCompression=True)
    sitk.WriteImage(sitk.Cast(phantom.labels, sitk.sitkUInt8), str(resource_path(SELF_TEST_LABELS)), True)
    print(f"wrote {resource_path(SELF_TEST_IMAGE)} and {resource_path(SELF_TEST_LABELS)}")


if __name__ == "__main__":
    main()
