"""Regenerate Resources/cohort_report.png, the picture of ``pbseg report`` in docs/command-line.md: a small cohort
of knee phantoms (generator 1.0, the bundled model's distribution) named with their ages, one with
inverted contrast (a case the model gets wrong and says so), segmented in two shards with the
bundled model, reported, and the page photographed by headless Chromium (Debian: ``apt-get install
chromium``).

    .venv/bin/python training/scripts/make_cohort_screenshot.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import SimpleITK as sitk

from pbseg_training.phantoms import generate_phantom

ROOT = Path(__file__).resolve().parents[2]
AGES = (3, 5, 7, 9, 11, 13, 15, 17)
PBSEG = [sys.executable, "-c", "import sys; from PediatricBoneSegLib.cli import main; sys.exit(main())"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=ROOT / "Resources" / "cohort_report.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no Chromium: apt-get install chromium")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pbseg-cohort-"))
    inputs, out = workdir / "in", workdir / "out"
    inputs.mkdir(parents=True, exist_ok=True)
    for seed, age in enumerate(AGES, start=100):
        image = generate_phantom("knee", seed, age_years=age, version="1.0").image
        sitk.WriteImage(image, str(inputs / f"knee_{seed}_age{age}.nii.gz"), useCompression=True)
        if age == 11:  # inverted contrast: outside what the model knows
            inverted = sitk.Cast(
                sitk.ShiftScale(image, -float(sitk.GetArrayViewFromImage(image).max()), -1.0), image.GetPixelID()
            )
            sitk.WriteImage(inverted, str(inputs / f"knee_{seed}_inverted_age{age}.nii.gz"), useCompression=True)
    for shard in ("0/2", "1/2"):
        subprocess.run(
            [*PBSEG, "segment", str(inputs), "-o", str(out), "--shard", shard, "--skip-existing"], check=False
        )
    subprocess.run([*PBSEG, "report", str(out), "--title", "Knee phantoms, generator 1.0"], check=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={workdir / 'profile'}",
         f"--screenshot={args.output}", "--window-size=1500,1100", "--hide-scrollbars",
         (out / "cohort.html").as_uri()],
        check=True,
    )  # fmt: skip
    print(f"wrote {args.output} (cohort in {out})")


if __name__ == "__main__":
    main()
