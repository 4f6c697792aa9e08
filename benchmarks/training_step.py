"""Training-step benchmark: milliseconds per optimizer step of the multi-domain
training schemes, at the settings of the paper-sized experiment and the bundled model.

    .venv/bin/python benchmarks/training_step.py [--steps 20] [--threads 1] [--cases 1]

Data: ``--cases`` full-resolution phantoms per joint (``write_phantom_dataset``, seed 0), sliced
as in training (160 px). Network: the bundled model's (MobileNetV2 U-Net, decoder 64-32-24-16-16;
random weights: the cost of a step does not depend on them). Each figure is the median over
``--steps`` calls of ``trainer.training_step`` (augmentation, forward of 4 slices per domain and
three domains, losses, backward, clipping, AdamW) after 3 warm-up steps, with ``--threads``
threads (1: the experiment's one-thread jobs). The shape prior of ``full`` is pre-trained for 20
steps beforehand (not timed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from pbseg_training.config import DatasetSpec, TrainingConfig
from pbseg_training.data import DomainSlices, load_domain
from pbseg_training.phantoms import write_phantom_dataset
from pbseg_training.schemes import plan_phases
from pbseg_training.trainer import build_network, pretrain_joint_prior, training_step
from PediatricBoneSegLib.catalog import JOINT_KEYS
from PediatricBoneSegLib.network.config import PreprocessingConfig

SCHEMES = ("shared", "mtmd", "mtmd_contrastive", "full")
INPUT_SIZE = 160


def time_scheme(scheme: str, datasets: tuple[DatasetSpec, ...], pools: dict[str, DomainSlices], steps: int) -> float:
    """Median seconds per training step of ``scheme`` on ``pools`` (the slices of ``datasets``)."""
    config = TrainingConfig(
        name=scheme,
        scheme=scheme,
        datasets=datasets,
        decoder_channels=(64, 32, 24, 16, 16),
        input_size=INPUT_SIZE,
        batch_per_domain=4,
        shape_prior_steps=20,
    )
    (phase,) = plan_phases(config, tuple(pools))
    network = build_network(phase, config, None).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    prior = pretrain_joint_prior(pools, config) if config.shape_prior else None
    domain_pools = [pools[joint] for joint in phase.joints]
    durations = []
    for step in range(3 + steps):
        start = time.perf_counter()
        training_step(network, optimizer, phase, domain_pools, config, prior, step)
        if step >= 3:
            durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", type=int, default=1, help="phantoms per joint")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        datasets = tuple(
            DatasetSpec(str(write_phantom_dataset(joint, args.cases, 0, Path(folder) / joint)), joint)
            for joint in JOINT_KEYS
        )
        print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.steps} steps")
        pools = {spec.joint: load_domain(spec, PreprocessingConfig(size=INPUT_SIZE)) for spec in datasets}
        reference = None
        for scheme in SCHEMES:
            seconds = time_scheme(scheme, datasets, pools, args.steps)
            reference = reference or seconds
            print(f"{scheme:18s} {seconds * 1000:7.0f} ms/step  {seconds / reference:4.2f}x shared", flush=True)


if __name__ == "__main__":
    main()
