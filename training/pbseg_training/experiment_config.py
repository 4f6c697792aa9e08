"""Configuration of a scheme-comparison experiment (one TOML file): datasets (given, or phantoms
generated on first use), folds, schemes, and the training settings every scheme shares."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomllib

from PediatricBoneSegLib.catalog import JOINT_KEYS, get_joint

from .config import SCHEMES, config_from_dict
from .shift import ShiftSpec


@dataclass(frozen=True)
class PhantomSpec:
    """Phantom datasets generated into ``<output>/data/<joint>`` when absent: ``cases`` subjects per
    joint, joint ``j`` drawn from seed ``seed + 100 * index(j)``; ``voxel_scale`` > 1 coarsens the grid."""

    cases: int = 8
    seed: int = 4000
    voxel_scale: float = 1.0
    joints: tuple[str, ...] = JOINT_KEYS
    generator_version: str = "2.0"  # "1.0": the committed experiment's one-contrast-per-joint phantoms


@dataclass(frozen=True)
class ExperimentConfig:
    """``training``: TrainingConfig values shared by every run (scheme, seed, datasets, name and
    target joint are set per run); ``base``: folder that relative paths are resolved against."""

    name: str = "experiment"
    seed: int = 0
    folds: int = 4
    schemes: tuple[str, ...] = SCHEMES
    reference: str = "full"
    subject_pattern: str | None = None
    datasets: tuple[tuple[str, str], ...] = ()  # (joint, raw-layout folder)
    phantoms: PhantomSpec | None = None
    shift: ShiftSpec | None = None  # the distribution-shift design (phantoms only), see ``shift``
    training: dict[str, Any] = field(default_factory=dict)
    postprocess: bool = False
    base: str = "."

    def __post_init__(self) -> None:
        found = []
        unknown = [s for s in self.schemes if s not in SCHEMES]
        if unknown:
            found.append(f"unknown schemes {unknown} (known: {SCHEMES})")
        if self.reference not in self.schemes:
            found.append(f"reference scheme {self.reference!r} is not among the schemes")
        if self.folds < 2:
            found.append("folds must be >= 2")
        if bool(self.datasets) == (self.phantoms is not None):
            found.append("give either [[datasets]] or [phantoms], not both nor neither")
        if self.shift is not None:
            if self.phantoms is None or self.phantoms.generator_version != "2.0":
                found.append("[shift] needs [phantoms] of generator 2.0")
            elif set(self.phantoms.joints) - set(self.shift.site_protocols):
                found.append(f"[shift] site_protocols must name every joint of [phantoms]: {self.phantoms.joints}")
            if self.subject_pattern is not None:
                found.append("[shift] sets the subject pattern itself: remove subject_pattern")
        reserved = sorted({"scheme", "seed", "datasets", "name", "target_joint"} & set(self.training))
        if reserved:
            found.append(f"[training] may not set {reserved}: the experiment sets them per run")
        try:  # every training value must be valid before hours of work start
            config_from_dict({**self.training, "datasets": [{"path": "."}]})
        except (ValueError, TypeError) as error:
            found.append(f"[training]: {error}")
        if found:
            raise ValueError("invalid experiment configuration: " + "; ".join(found))


def load_experiment_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment TOML file; one error names the file and every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        phantoms = raw.pop("phantoms", None)
        if phantoms is not None:
            phantoms = PhantomSpec(
                **{**phantoms, "joints": tuple(get_joint(j).key for j in phantoms.get("joints", JOINT_KEYS))}
            )
        shift = raw.pop("shift", None)
        shift = None if shift is None else _shift_spec(shift)
        datasets = tuple((get_joint(entry["joint"]).key, entry["path"]) for entry in raw.pop("datasets", ()))
        if "schemes" in raw:
            raw["schemes"] = tuple(raw["schemes"])
        return ExperimentConfig(
            **raw, datasets=datasets, phantoms=phantoms, shift=shift, base=str(path.parent.resolve())
        )
    except (OSError, tomllib.TOMLDecodeError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: {error}") from error


def _shift_spec(raw: dict[str, Any]) -> ShiftSpec:
    """The ``[shift]`` table as a ShiftSpec (TOML arrays as tuples)."""
    values = dict(raw)
    values["site_protocols"] = {get_joint(j).key: tuple(f) for j, f in values.pop("site_protocols", {}).items()}
    if "cohort_ages" in values:
        values["cohort_ages"] = tuple(values["cohort_ages"])
    if "shifted_ages" in values:
        values["shifted_ages"] = tuple(tuple(ages) for ages in values["shifted_ages"])
    return ShiftSpec(**values)


def with_overrides(config: ExperimentConfig, **training: Any) -> ExperimentConfig:
    return replace(config, training={**config.training, **training})
