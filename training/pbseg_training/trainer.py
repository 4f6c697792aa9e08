"""The training loop: one mini-batch per domain each step, forwarded together (each sample with
its domain's BN), Dice + CE per head (+ contrastive, + shape prior), resumable checkpoints,
TensorBoard logs, DistributedDataParallel under torchrun (gloo on CPU, NCCL on GPUs)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.network import MultiDomainUNet, load_imagenet_encoder
from PediatricBoneSegLib.network.config import PreprocessingConfig
from PediatricBoneSegLib.network.modelfile import load_model

from .augment import augment_batch
from .checkpoint import TrainingState, load_checkpoint, save_checkpoint
from .config import TrainingConfig
from .data import DomainSlices, load_domain, sample_indices
from .export import export_model
from .losses import dice_ce_loss, multiscale_contrastive_loss
from .schemes import Phase, plan_phases
from .shape_prior import ShapeAutoencoder, pretrain_shape_prior, shape_prior_loss, union_one_hot, union_probabilities

CHECKPOINT_NAME = "checkpoint.safetensors"
MODEL_NAME = "model.safetensors"
HISTORY_NAME = "history.json"


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed() -> Distributed:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(dist.get_rank(), world_size)


def step_generator(config: TrainingConfig, step: int, rank: int) -> torch.Generator:
    """Randomness of a step depends only on (seed, step, rank): a resumed run draws what the
    uninterrupted run would have drawn."""
    return torch.Generator().manual_seed(config.seed * 1_000_003 + step * 7919 + rank * 104_729)


def learning_rate(config: TrainingConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (1 - min(progress, 1.0)) ** 0.9


def build_network(phase: Phase, config: TrainingConfig, previous: MultiDomainUNet | None) -> MultiDomainUNet:
    network = MultiDomainUNet(phase.network)
    if previous is not None:  # transfer: keep every shared weight, a fresh head for the new task
        inherited = {k: v for k, v in previous.state_dict().items() if not k.startswith("heads.")}
        network.load_state_dict(inherited, strict=False)
    elif config.initial_model:
        network.load_state_dict(initial_network(config.initial_model, phase).state_dict())
    elif config.imagenet_weights:
        report = load_imagenet_encoder(network.encoder, config.imagenet_weights)
        if report.unmatched or report.missing:
            raise ValueError(
                f"{config.imagenet_weights}: {len(report.unmatched)} unmatched keys {report.unmatched[:5]}, "
                f"{len(report.missing)} encoder tensors missing {report.missing[:5]}"
            )
    return network.to(memory_format=torch.channels_last)


def initial_network(path: str | Path, phase: Phase) -> MultiDomainUNet:
    """The network of an exported model file, checked against the phase it is to start."""
    loaded = load_model(path)
    if loaded.manifest.architecture != phase.network:
        raise ValueError(
            f"{path}: its network ({loaded.manifest.architecture}) is not the one this configuration trains "
            f"({phase.network}): same encoder, decoder channels, joints and layout needed for a warm start"
        )
    if list(loaded.manifest.joints) != list(phase.joints):
        raise ValueError(f"{path}: its joints {loaded.manifest.joints} are not this training's {list(phase.joints)}")
    return loaded.network


def _domain_batch(
    pools: list[DomainSlices], config: TrainingConfig, generator: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor], list[int]]:
    images, labels, domains = [], [], []
    for domain, pool in enumerate(pools):
        index = sample_indices(pool, config.batch_per_domain, config.foreground_fraction, generator, config.sampling)
        batch_images, batch_labels = pool.images[index], pool.labels[index].long()
        if config.augment:
            tissues = None if pool.tissues is None else pool.tissues[index]
            batch_images, batch_labels = augment_batch(
                batch_images, batch_labels, pool.mirrorable[index], config, generator, tissues
            )
        images.append(batch_images)
        labels.append(batch_labels)
        domains += [domain] * len(index)
    return torch.cat(images).contiguous(memory_format=torch.channels_last), labels, domains


def _step_losses(
    model: torch.nn.Module,
    phase: Phase,
    pools: list[DomainSlices],
    config: TrainingConfig,
    prior: ShapeAutoencoder | None,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    images, labels, domains = _domain_batch(pools, config, generator)
    output = model(images, domains, with_embeddings=config.contrastive)
    segmentation, shape = [], []
    for domain, joint in enumerate(phase.joints):
        target = labels[domain]
        if phase.union_labels:
            target = torch.tensor(get_joint(joint).to_union())[target]
        logits = output.logits[domain]
        segmentation.append(dice_ce_loss(logits, target))
        if prior is not None:
            probabilities = logits.float().softmax(1)
            predicted = probabilities if phase.union_labels else union_probabilities(probabilities, joint)
            truth = union_one_hot(target, None if phase.union_labels else joint)
            shape.append(shape_prior_loss(prior, predicted, truth))
    losses = {"segmentation": torch.stack(segmentation).mean()}
    if config.contrastive and len(phase.joints) > 1:
        losses["contrastive"] = multiscale_contrastive_loss(
            output.embeddings, torch.tensor(domains), config.temperature
        )
    if shape:
        losses["shape"] = torch.stack(shape).mean()
    weights = {"segmentation": 1.0, "contrastive": config.contrastive_weight, "shape": config.shape_weight}
    losses["total"] = sum(weights[name] * value for name, value in losses.items())
    return losses


def training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    phase: Phase,
    pools: list[DomainSlices],
    config: TrainingConfig,
    prior: ShapeAutoencoder | None,
    step: int,
    rank: int = 0,
) -> dict[str, torch.Tensor]:
    """One optimizer step (learning-rate schedule, one augmented mini-batch per domain, losses,
    backward, gradient clipping); returns the step's losses."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(config, step)
    losses = _step_losses(model, phase, pools, config, prior, step_generator(config, step, rank))
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
    optimizer.step()
    return losses


def pretrain_joint_prior(pools: dict[str, DomainSlices], config: TrainingConfig) -> ShapeAutoencoder:
    union = [torch.tensor(get_joint(joint).to_union())[pool.labels.long()] for joint, pool in pools.items()]
    generator = torch.Generator().manual_seed(config.seed + 17)
    return pretrain_shape_prior(
        torch.cat(union), config.shape_prior_steps, config.shape_prior_size, config.shape_prior_latent, generator
    )


def train(
    config: TrainingConfig,
    out_dir: str | Path,
    resume: bool = False,
    show_progress: bool = True,
    stop_at: int | None = None,
) -> Path | None:
    """Run (or resume) a training; returns the exported model file ``out_dir/model.safetensors``.
    ``stop_at``: checkpoint and return None once that many steps are done (a time-boxed session;
    ``resume=True`` later continues exactly where it stopped)."""
    out_dir = Path(out_dir)
    distributed = _init_distributed()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    preprocessing = PreprocessingConfig(size=config.input_size)
    specs = list(config.datasets)
    all_pools = [load_domain(spec, preprocessing, config.extra_planes) for spec in specs]
    pools_by_joint = {pool.joint: pool for pool in all_pools}
    if len(pools_by_joint) != len(all_pools):
        raise ValueError("two datasets of the same joint: merge them into one dataset")
    phases = plan_phases(config, tuple(pools_by_joint))

    checkpoint_path = out_dir / CHECKPOINT_NAME
    state = load_checkpoint(checkpoint_path) if resume and checkpoint_path.exists() else None
    if resume and state is None and distributed.is_main:
        print(f"no checkpoint in {out_dir}: starting from scratch")
    # training time over every session of a resumed run (steps redone after an interruption count once)
    started = time.monotonic() - (state.info.get("elapsed_s", 0.0) if state is not None else 0.0)
    prior = None
    if config.shape_prior:
        if state is not None and state.shape_prior is not None:
            prior = ShapeAutoencoder(config.shape_prior_size, config.shape_prior_latent)
            prior.load_state_dict(state.shape_prior)
            prior.eval().requires_grad_(False)
        else:
            prior = pretrain_joint_prior(pools_by_joint, config)

    writer = None
    if distributed.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tensorboard"))
    network: MultiDomainUNet | None = None
    step = 0
    if state is not None:
        step = state.step
        saved_phase = next(phase for phase in phases if phase.name == state.phase)
        network = MultiDomainUNet(saved_phase.network).to(memory_format=torch.channels_last)
        network.load_state_dict(state.model)
    history: list[tuple[int, float]] = []
    for phase in phases:
        if step >= phase.stop:
            continue
        resumed_here = state is not None and state.phase == phase.name
        if not resumed_here:
            network = build_network(phase, config, network)
        assert network is not None
        model: torch.nn.Module = network
        if distributed.world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(network, find_unused_parameters=True)
        optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        if resumed_here:
            optimizer.load_state_dict(state.optimizer)
        pools = [pools_by_joint[joint] for joint in phase.joints]
        model.train()
        bar = tqdm(
            range(max(step, phase.start), phase.stop),
            desc=f"{config.name}:{phase.name}",
            disable=not (show_progress and distributed.is_main),
            dynamic_ncols=True,
        )
        for step in bar:
            losses = training_step(model, optimizer, phase, pools, config, prior, step, distributed.rank)
            history.append((step, losses["total"].item()))
            if writer is not None and (step % config.log_every == 0 or step == phase.stop - 1):
                for name, value in losses.items():
                    writer.add_scalar(f"loss/{name}", value.item(), step)
                writer.add_scalar("lr", optimizer.param_groups[0]["lr"], step)
                bar.set_postfix(loss=f"{losses['total'].item():.3f}")
            done = step + 1
            stopping = stop_at is not None and done >= stop_at
            if distributed.is_main and (done % config.checkpoint_every == 0 or done == phase.stop or stopping):
                prior_state = prior.state_dict() if prior is not None else None
                info = {"elapsed_s": time.monotonic() - started}
                state_now = TrainingState(
                    done, phase.name, network.state_dict(), optimizer.state_dict(), prior_state, info
                )
                save_checkpoint(checkpoint_path, state_now)
            if stopping:
                _close(writer, out_dir, history)
                return None
        step = phase.stop
        state = None
    _close(writer, out_dir, history)
    assert network is not None
    model_path = out_dir / MODEL_NAME
    if distributed.is_main:
        export_model(
            network,
            config,
            phases[-1],
            [pools_by_joint[j] for j in phases[-1].joints],
            model_path,
            training_seconds=time.monotonic() - started,
            final_losses=_recorded_losses(out_dir / HISTORY_NAME)[-50:],
        )
    if distributed.world_size > 1:
        dist.barrier()
    return model_path


def _append_history(path: Path, history: list[tuple[int, float]]) -> None:
    """Total loss per step, kept across resumed runs (steps re-run after a resume replace the old)."""
    previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    merged = {int(step): loss for step, loss in previous.items()} | dict(history)
    path.write_text(json.dumps({str(step): merged[step] for step in sorted(merged)}), encoding="utf-8")


def _close(writer, out_dir: Path, history: list[tuple[int, float]]) -> None:
    if writer is not None:
        writer.close()
        _append_history(out_dir / HISTORY_NAME, history)


def _recorded_losses(path: Path) -> list[float]:
    """Losses of every step recorded so far (a resumed or re-exported run included)."""
    return list(json.loads(path.read_text(encoding="utf-8")).values()) if path.exists() else []
