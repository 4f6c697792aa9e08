"""Datasets of the distribution-shift experiment: per joint, a cohort of children imaged at one
site with one or two protocols of the joint's family (the only images training sees), and every
child imaged again under shift, for testing only.

Each subject ``s`` of joint ``j`` is rendered (generator 2.0, one anatomy per subject seed) as:

- ``<j>_s<ss>_seen_<FAMILY>``: a site protocol, an age in the cohort's range, typical morphology;
- ``<j>_s<ss>_protocol_<FAMILY>``: the same child in a protocol family the joint's site never used;
- ``<j>_s<ss>_anatomy_<FAMILY>``: a site protocol, but younger or older than the cohort and with
  pathological morphology (brachial plexus palsy, trochlear dysplasia, a turned calcaneus).

Cross-validation is by subject (all renderings of a child fall in one fold); a run trains on the
``seen`` renderings of its training subjects and is tested on every rendering of its test subjects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from PediatricBoneSegLib.catalog import JOINT_KEYS, get_joint

SEEN, UNSEEN_PROTOCOL, UNSEEN_ANATOMY = "seen", "protocol", "anatomy"
CONDITIONS = (SEEN, UNSEEN_PROTOCOL, UNSEEN_ANATOMY)
CONDITION_TITLES = {
    SEEN: "seen protocol, cohort anatomy",
    UNSEEN_PROTOCOL: "unseen protocol, cohort anatomy",
    UNSEEN_ANATOMY: "seen protocol, unseen age and morphology",
}
# The unseen-protocol cases split by whether another joint's site used the protocol family: what
# a network shared by the joints could have learned from the other joints' images.
OTHER_SITE, NO_SITE = "protocol_other_site", "protocol_no_site"
SPLIT_TITLES = {
    OTHER_SITE: "unseen protocol, used by another joint's site",
    NO_SITE: "unseen protocol, used by no site",
}
SUBJECT_PATTERN = r"([a-z]+_s\d+)_"
_CASE = re.compile(r"^(?P<subject>[a-z]+_s\d+)_(?P<condition>seen|protocol|anatomy)_(?P<family>[A-Z0-9_]+)$")
_AGE_SALT = 0x5A17


@dataclass(frozen=True)
class ShiftSpec:
    """``site_protocols``: per joint, the one or two protocol families of its training site;
    ``cohort_ages``: the cohort's age range (years); ``shifted_ages``: the ranges the
    unseen-anatomy renderings are drawn from (alternating between subjects), outside the cohort's;
    ``unseen_protocols``: unseen-protocol renderings per subject (families dealt in turn)."""

    site_protocols: Mapping[str, tuple[str, ...]]
    cohort_ages: tuple[float, float] = (7.0, 12.0)
    shifted_ages: tuple[tuple[float, float], ...] = ((2.5, 5.0), (14.0, 16.5))
    unseen_protocols: int = 2

    def __post_init__(self) -> None:
        from pbseg_training.phantoms.generator import AGE_RANGE
        from pbseg_training.phantoms.protocols import FAMILIES

        found = []
        for joint, families in self.site_protocols.items():
            if joint not in JOINT_KEYS:
                found.append(f"unknown joint {joint!r}")
            unknown = sorted(set(families) - set(FAMILIES))
            if unknown or not 1 <= len(families) <= 2 or len(set(families)) != len(families):
                found.append(f"{joint}: one or two distinct protocol families of {FAMILIES}, got {list(families)}")
            elif not 1 <= self.unseen_protocols <= len(FAMILIES) - len(families):
                found.append(f"{joint}: unseen_protocols must be within 1..{len(FAMILIES) - len(families)}")
        low, high = self.cohort_ages
        if not AGE_RANGE[0] <= low < high <= AGE_RANGE[1]:
            found.append(f"cohort_ages must be an increasing range within {AGE_RANGE}, got {self.cohort_ages}")
        for shifted in self.shifted_ages:
            a, b = shifted
            if not AGE_RANGE[0] <= a < b <= AGE_RANGE[1] or (a < high and b > low):
                found.append(f"shifted age range {shifted} must lie within {AGE_RANGE} and outside the cohort's")
        if not self.shifted_ages:
            found.append("shifted_ages needs at least one range")
        if found:
            raise ValueError("[shift]: " + "; ".join(found))

    def protocol_split(self, joint: str, family: str) -> str:
        """``OTHER_SITE`` when another joint's site images with ``family``, else ``NO_SITE``."""
        others = {f for j, families in self.site_protocols.items() if j != joint for f in families}
        return OTHER_SITE if family in others else NO_SITE

    def unseen_families(self, joint: str) -> tuple[str, ...]:
        from pbseg_training.phantoms.protocols import FAMILIES

        return tuple(family for family in FAMILIES if family not in self.site_protocols[joint])

    def renderings(self, joint: str, subject: int, seed: int) -> list[Rendering]:
        """Every rendering of one subject, in case-id order."""
        rng = np.random.default_rng([_AGE_SALT, seed])
        cohort_age = float(rng.uniform(*self.cohort_ages))
        shifted = self.shifted_ages[subject % len(self.shifted_ages)]
        shifted_age = float(rng.uniform(*shifted))
        site = self.site_protocols[joint]
        own = site[subject % len(site)]
        unseen = self.unseen_families(joint)
        dealt = [unseen[(subject * self.unseen_protocols + k) % len(unseen)] for k in range(self.unseen_protocols)]
        stem = f"{get_joint(joint).key}_s{subject:02d}"
        return [
            Rendering(f"{stem}_{SEEN}_{own}", SEEN, own, cohort_age, False),
            *(
                Rendering(f"{stem}_{UNSEEN_PROTOCOL}_{family}", UNSEEN_PROTOCOL, family, cohort_age, False)
                for family in dealt
            ),
            Rendering(f"{stem}_{UNSEEN_ANATOMY}_{own}", UNSEEN_ANATOMY, own, shifted_age, True),
        ]


@dataclass(frozen=True)
class Rendering:
    """One image of a subject: its case id, condition, protocol family, age (years) and whether its
    morphology is pathological."""

    case_id: str
    condition: str
    family: str
    age_years: float
    pathology: bool


def parse_case(case_id: str) -> tuple[str, str, str]:
    """(subject, condition, protocol family) of a shift dataset's case id."""
    match = _CASE.match(case_id)
    if match is None:
        raise ValueError(f"{case_id!r} is not a shift-experiment case id (<joint>_s<nn>_<condition>_<FAMILY>)")
    return match["subject"], match["condition"], match["family"]


def training_cases(case_ids: tuple[str, ...]) -> tuple[str, ...]:
    """The cases a run may train on: the site's own renderings."""
    return tuple(case for case in case_ids if parse_case(case)[1] == SEEN)


def write_shift_dataset(
    joint: str, subjects: int, seed: int, out_dir: str | Path, spec: ShiftSpec, voxel_scale: float = 1.0
) -> Path:
    """Write every rendering of ``subjects`` children of ``joint`` as one raw-layout dataset
    (atomic, like ``write_phantom_dataset``); subject ``s`` uses ``case_seed(seed, s)``."""
    from pbseg_training.dataset import write_raw_dataset
    from pbseg_training.phantoms import case_seed, generate_phantom

    joint = get_joint(joint).key
    if joint not in spec.site_protocols:
        raise ValueError(f"[shift] gives no site protocols for the {joint}")
    seeds = [case_seed(seed, subject) for subject in range(subjects)]
    plan = [(seeds[s], r) for s in range(subjects) for r in spec.renderings(joint, s, seeds[s])]

    def cases() -> Iterator[tuple]:
        for subject_seed, rendering in plan:
            phantom = generate_phantom(
                joint,
                subject_seed,
                age_years=rendering.age_years,
                voxel_scale=voxel_scale,
                protocol=rendering.family,
                pathology=rendering.pathology,
            )
            parameters = phantom.parameters | {"shift_condition": rendering.condition}
            yield rendering.case_id, phantom.image, phantom.labels, phantom.tissues, parameters

    provenance = {
        "generator": "pbseg_training.shift",
        "generator_version": "2.0",
        "seed": int(seed),
        "voxel_scale": float(voxel_scale),
        "site_protocols": list(spec.site_protocols[joint]),
        "cohort_ages": list(spec.cohort_ages),
    }
    return write_raw_dataset(out_dir, joint, cases(), len(plan), extra=provenance)
