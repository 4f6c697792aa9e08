"""The six training schemes of the paper's comparison, as phases of (domains, network layout).

- individual: one network per joint (a single-domain network on the target joint);
- transfer: pre-train a shared network on the other joints, fine-tune on the target joint;
- shared: one fully shared network (one BN set, one union-space head) on all joints;
- mtmd: multi-task multi-domain (domain-specific BN and heads);
- mtmd_contrastive: mtmd + multi-scale supervised contrastive regularization;
- full: mtmd_contrastive + multi-joint shape prior.
"""

from __future__ import annotations

from dataclasses import dataclass

from PediatricBoneSegLib.catalog import NUM_UNION_CLASSES, get_joint
from PediatricBoneSegLib.network import NetworkConfig

from .config import TrainingConfig


@dataclass(frozen=True)
class Phase:
    """``joints``: the domains trained in this phase, in domain order; ``steps``: [start, stop)."""

    name: str
    joints: tuple[str, ...]
    network: NetworkConfig
    start: int
    stop: int

    @property
    def union_labels(self) -> bool:
        return self.network.shared


def plan_phases(config: TrainingConfig, dataset_joints: tuple[str, ...]) -> list[Phase]:
    def network(joints: tuple[str, ...], shared: bool) -> NetworkConfig:
        classes = (NUM_UNION_CLASSES,) * len(joints) if shared else tuple(get_joint(j).num_classes for j in joints)
        return NetworkConfig(
            encoder=config.encoder, classes_per_domain=classes, shared=shared, decoder_channels=config.decoder_channels
        )

    if config.scheme in ("individual", "transfer"):
        target = get_joint(config.target_joint or "").key
        if target not in dataset_joints:
            raise ValueError(f"target joint {target!r} has no dataset (datasets: {dataset_joints})")
        final = network((target,), shared=False)
        if config.scheme == "individual":
            return [Phase("train", (target,), final, 0, config.steps)]
        others = tuple(j for j in dataset_joints if j != target)
        if not others:
            raise ValueError("transfer needs datasets of other joints to pre-train on")
        switch = int(config.steps * config.transfer_pretrain_fraction)
        return [
            Phase("pretrain", others, network(others, shared=True), 0, switch),
            Phase("finetune", (target,), final, switch, config.steps),
        ]
    shared = config.scheme == "shared"
    return [Phase("train", dataset_joints, network(dataset_joints, shared), 0, config.steps)]
