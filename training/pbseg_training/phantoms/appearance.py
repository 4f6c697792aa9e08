"""MR appearance: the tissue list, generator 1.0's per-joint contrasts, texture, bias field and
Rician noise (generator 2.0 draws its contrasts per case: ``protocols.py``).

In generator 1.0 each joint's table mimics the protocol it is usually imaged with, so the three domains differ as
real protocols do: knee proton-density fat-saturated (bright cartilage and fluid, dark fat and
yellow marrow), ankle T1-weighted (bright fat and marrow, dark fluid), shoulder T2-weighted without
fat saturation (bright fluid, intermediate-bright fat and marrow, dark muscle). Relative signal,
1.0 = the brightest tissue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

TISSUES = (
    "air",
    "skin",
    "fat",
    "muscle",
    "tendon",
    "cartilage",
    "physis",
    "cortex",
    "marrow",
    "red_marrow",
    "fluid",
    "vessel",
)

CONTRASTS: dict[str, dict[str, float]] = {
    "knee": {  # PD fat-saturated
        "air": 0.0,
        "skin": 0.35,
        "fat": 0.12,
        "muscle": 0.32,
        "tendon": 0.05,
        "cartilage": 0.62,
        "physis": 0.78,
        "cortex": 0.03,
        "marrow": 0.16,
        "red_marrow": 0.40,
        "fluid": 0.95,
        "vessel": 0.08,
    },
    "ankle": {  # T1-weighted
        "air": 0.0,
        "skin": 0.45,
        "fat": 0.92,
        "muscle": 0.33,
        "tendon": 0.05,
        "cartilage": 0.40,
        "physis": 0.30,
        "cortex": 0.03,
        "marrow": 0.85,
        "red_marrow": 0.50,
        "fluid": 0.22,
        "vessel": 0.12,
    },
    "shoulder": {  # T2-weighted, no fat saturation
        "air": 0.0,
        "skin": 0.40,
        "fat": 0.70,
        "muscle": 0.22,
        "tendon": 0.05,
        "cartilage": 0.45,
        "physis": 0.60,
        "cortex": 0.03,
        "marrow": 0.62,
        "red_marrow": 0.45,
        "fluid": 1.0,
        "vessel": 0.06,
    },
}

TEXTURE = {"muscle": 0.10, "marrow": 0.12, "red_marrow": 0.12, "fat": 0.05}  # relative modulation amplitude


@dataclass(frozen=True)
class Appearance:
    """One case's contrast: tissue signal (arbitrary scanner units), noise and bias settings."""

    signal: dict[str, float]
    noise: float  # Rician sigma as a fraction of the brightest tissue signal
    bias: float  # amplitude of the log bias field
    gain: float

    @classmethod
    def draw(cls, joint: str, rng: np.random.Generator) -> Appearance:
        gain = float(rng.uniform(300.0, 1500.0))
        signal = {t: gain * v * float(rng.uniform(0.9, 1.1)) for t, v in CONTRASTS[joint].items()}
        return cls(signal, float(rng.uniform(0.015, 0.045)), float(rng.uniform(0.1, 0.3)), gain)


def texture_field(
    shape: tuple[int, ...], rng: np.random.Generator, sigma: tuple[float, float, float] = (0.0, 1.5, 1.5)
) -> np.ndarray:
    """Smooth unit-variance noise correlated over ``sigma`` pixels ([k, j, i]; the default: ~2
    pixels in-plane, as trabeculae and muscle fibres)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=sigma)
    return field / max(float(field.std()), 1e-6)


def bias_field(shape: tuple[int, int, int], amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field exp(sum of a few low-frequency separable cosines)."""
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    log_field = np.zeros(shape, dtype=np.float32)
    for _ in range(4):
        frequency = rng.uniform(0.3, 1.4, 3)
        phase = rng.uniform(0.0, 2 * np.pi, 3)
        terms = [np.cos(frequency[a] * np.pi * axes[a] + phase[a]) for a in range(3)]
        log_field += (
            float(rng.normal(0.0, 1.0)) * terms[0][:, None, None] * terms[1][None, :, None] * terms[2][None, None, :]
        )
    log_field *= amplitude / max(float(np.abs(log_field).max()), 1e-6)
    return np.exp(log_field)


def add_rician_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the complex signal plus Gaussian noise in both channels."""
    real = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    imag = rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.sqrt(real * real + imag * imag)
