"""Regenerate Resources/phantom_montage.png: generator-2.0 phantoms of the three joints in several
protocol families, ages and planes (the picture in docs/phantoms.md). Run from the repository root."""

from pathlib import Path

from pbseg_training.phantoms import generate_phantom
from pbseg_training.phantoms.montage import save_montage

CASES = [  # (joint, seed, age, protocol family)
    ("knee", 3, 6.0, "PD_FS"),
    ("knee", 4, 12.0, "T1"),
    ("knee", 5, 15.0, "GRE"),
    ("ankle", 3, 5.0, "T1"),
    ("ankle", 4, 10.0, "STIR"),
    ("ankle", 5, 14.0, "T2"),
    ("shoulder", 3, 8.0, "T2_FS"),
    ("shoulder", 4, 11.0, "PD"),
    ("shoulder", 5, 16.0, "T1_FS"),
]

if __name__ == "__main__":
    phantoms = [generate_phantom(joint, seed, age, protocol=family) for joint, seed, age, family in CASES]
    print(save_montage(phantoms, Path("Resources/phantom_montage.png"), per_row=3))
