"""Pediatric joint phantoms: MR-like volumes and bone labels of ankles, knees and shoulders of
simulated 2-17-year-olds, deterministic from a seed (the project's development data)."""

from .generator import GENERATOR_VERSION, Phantom, case_seed, generate_phantom, write_phantom_dataset

__all__ = ["GENERATOR_VERSION", "Phantom", "case_seed", "generate_phantom", "write_phantom_dataset"]
