"""Batch throughput (issue 19): cases per hour of one ``pbseg segment`` process over a folder of
volumes with the bundled model and the default outputs (surfaces included, no DICOM SEG: NIfTI
inputs), start-up included, for the bundled sample's size and for the standard volume of
``inference.py`` (384x384x160 voxels of 0.365x0.365x0.7 mm).

    .venv/bin/python benchmarks/batch_throughput.py [--sample-cases 6] [--standard-cases 4]

Prints one line per volume kind and the 1-minute load average before and after (the machine may be
shared: a load above the core count means the figures are low).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk
from inference import STANDARD, batch_folder, knee_volume, pbseg_process

from PediatricBoneSegLib.resources import bundled_sample_path


def cases_per_hour(folder: Path, outdir: Path) -> tuple[float, float]:
    """(cases per hour, seconds) of one ``pbseg segment`` process over ``folder``."""
    count = len(list(folder.iterdir()))
    begin = time.perf_counter()
    completed = subprocess.run(pbseg_process([folder], outdir, None), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - begin
    if completed.returncode not in (0, 1):  # 1: a case to check is still written
        raise RuntimeError(f"pbseg segment failed:\n{completed.stdout[-2000:]}{completed.stderr[-2000:]}")
    return count / seconds * 3600.0, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample-cases", type=int, default=6)
    parser.add_argument("--standard-cases", type=int, default=4)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pbseg-throughput-"))
    standard = workdir / "standard.nii.gz"
    sitk.WriteImage(knee_volume(*STANDARD), str(standard), useCompression=True)
    load_before = os.getloadavg()[0]
    size = sitk.ReadImage(str(bundled_sample_path())).GetSize()
    for label, volume, count in (
        (f"bundled sample {'x'.join(map(str, size))}", bundled_sample_path(), args.sample_cases),
        ("standard 384x384x160", standard, args.standard_cases),
    ):
        folder = batch_folder(volume, workdir / label.split()[0], count)
        rate, seconds = cases_per_hour(folder, workdir / f"out_{label.split()[0]}")
        print(f"{label}: {count} cases in {seconds:.1f} s = {rate:.0f} cases/hour", flush=True)
    print(f"load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
