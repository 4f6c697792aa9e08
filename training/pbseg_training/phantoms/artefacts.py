"""Acquisition artefacts of generator 2.0, applied to the rendered (noise-free) magnitude image:
receive-coil sensitivity fall-off and bias, k-space truncation (Gibbs ringing), motion ghosts
along the phase-encoding axis, and complex Gaussian noise whose magnitude is Rician."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .appearance import bias_field


@dataclass(frozen=True)
class Artefacts:
    """Drawn settings. ``coil_mix``: share of the signal shaped by a surface coil whose
    sensitivity falls off over ``coil_length`` mm from a point ``coil_direction`` (unit, in-plane
    index axes j, i) beyond the field's edge; ``kspace_fraction``: kept share of k-space along
    each in-plane axis (1 = no ringing); ``ghost_amplitude``: phase error of the disturbed lines,
    ``ghost_period`` lines apart, along in-plane index axis ``phase_axis`` (1 = j, 2 = i)."""

    bias: float
    coil_mix: float
    coil_length: float
    coil_direction: tuple[float, float]
    kspace_fraction: float
    ghost_amplitude: float
    ghost_period: int
    phase_axis: int
    noise: float

    @classmethod
    def draw(cls, noise: float, rng: np.random.Generator) -> Artefacts:
        angle = float(rng.uniform(0.0, 2 * np.pi))
        return cls(
            bias=float(rng.uniform(0.05, 0.35)),
            coil_mix=float(rng.uniform(0.0, 0.7)),
            coil_length=float(rng.uniform(50.0, 200.0)),
            coil_direction=(float(np.cos(angle)), float(np.sin(angle))),
            kspace_fraction=float(rng.uniform(0.5, 0.9)) if rng.random() < 0.7 else 1.0,
            ghost_amplitude=float(rng.uniform(0.2, 1.2)) if rng.random() < 0.3 else 0.0,
            ghost_period=int(rng.integers(3, 9)),
            phase_axis=int(rng.integers(1, 3)),
            noise=noise,
        )

    def to_json(self) -> dict:
        return {**self.__dict__, "coil_direction": list(self.coil_direction)}


def coil_sensitivity(shape: tuple[int, int, int], pixel: float, artefacts: Artefacts) -> np.ndarray:
    """[k, j, i] multiplicative field: 1 - mix + mix * exp(-distance to the coil / length)."""
    rows = (np.arange(shape[1], dtype=np.float32) - shape[1] / 2) * pixel
    cols = (np.arange(shape[2], dtype=np.float32) - shape[2] / 2) * pixel
    radius = 0.5 * max(shape[1], shape[2]) * pixel + 10.0
    dj, di = artefacts.coil_direction
    distance = np.hypot(rows[:, None] - dj * radius, cols[None, :] - di * radius)
    profile = np.exp(-(distance - distance.min()) / artefacts.coil_length)
    return ((1.0 - artefacts.coil_mix) + artefacts.coil_mix * profile)[None].astype(np.float32)


def _kspace_edit(image: np.ndarray, artefacts: Artefacts, rng: np.random.Generator) -> np.ndarray:
    """Complex image after truncating k-space and disturbing the phase of periodic lines."""
    if artefacts.kspace_fraction >= 1.0 and artefacts.ghost_amplitude == 0.0:
        return image.astype(np.complex64)
    spectrum = np.fft.fftshift(np.fft.fft2(image, axes=(1, 2)), axes=(1, 2))
    for axis in (1, 2):
        n = image.shape[axis]
        keep = np.abs(np.arange(n) - n // 2) <= artefacts.kspace_fraction * n / 2
        spectrum *= keep.reshape([-1 if a == axis else 1 for a in range(3)])
    if artefacts.ghost_amplitude:
        n = image.shape[artefacts.phase_axis]
        lines = np.zeros(n, bool)
        lines[int(rng.integers(artefacts.ghost_period)) :: artefacts.ghost_period] = True
        phase = np.where(lines, artefacts.ghost_amplitude * rng.uniform(-1.0, 1.0, n), 0.0)
        shape = [-1 if a == artefacts.phase_axis else 1 for a in range(3)]
        spectrum *= np.exp(1j * phase).reshape(shape)
    return np.fft.ifft2(np.fft.ifftshift(spectrum, axes=(1, 2)), axes=(1, 2)).astype(np.complex64)


def acquire(image: np.ndarray, pixel: float, artefacts: Artefacts, peak: float, rng: np.random.Generator) -> np.ndarray:
    """The magnitude image a scanner would reconstruct from the true signal ``image`` [k, j, i]
    (float32, arbitrary units; ``peak`` its brightest tissue signal)."""
    shaped = image * coil_sensitivity(image.shape, pixel, artefacts) * bias_field(image.shape, artefacts.bias, rng)
    signal = _kspace_edit(shaped, artefacts, rng)
    sigma = artefacts.noise * peak
    real = signal.real + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    imag = signal.imag + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.sqrt(real * real + imag * imag).astype(np.float32)
