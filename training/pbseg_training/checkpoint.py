"""Resumable training checkpoints, written atomically and never pickled.

Model, optimizer and shape-prior tensors go into one safetensors file; everything that is not a
tensor (step, phase, optimizer hyper-parameters) into its JSON metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from PediatricBoneSegLib.network.modelfile import save_safetensors_atomically


@dataclass
class TrainingState:
    step: int
    phase: str
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    shape_prior: dict[str, torch.Tensor] | None
    info: dict[str, Any]


def save_checkpoint(path: Path, state: TrainingState) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in state.model.items()}
    if state.shape_prior is not None:
        tensors.update({f"prior.{k}": v.detach().cpu().contiguous() for k, v in state.shape_prior.items()})
    optimizer_json: dict[str, Any] = {"param_groups": state.optimizer["param_groups"], "state": {}}
    for index, values in state.optimizer["state"].items():
        entry = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
                entry[name] = "tensor"
            else:
                entry[name] = value
        optimizer_json["state"][str(index)] = entry
    metadata = {
        "step": str(state.step),
        "phase": state.phase,
        "optimizer": json.dumps(optimizer_json),
        "info": json.dumps(state.info),
    }
    save_safetensors_atomically(path, tensors, metadata)


def load_checkpoint(path: Path) -> TrainingState:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
        tensors = load_file(str(path))
    except Exception as error:
        raise ValueError(f"{path}: unreadable checkpoint ({error})") from None
    optimizer_json = json.loads(metadata["optimizer"])
    optimizer_state: dict[int, dict[str, Any]] = {}
    for index, entry in optimizer_json["state"].items():
        optimizer_state[int(index)] = {
            name: tensors[f"optimizer.{index}.{name}"] if value == "tensor" else value for name, value in entry.items()
        }
    prior = {k[len("prior.") :]: v for k, v in tensors.items() if k.startswith("prior.")}
    return TrainingState(
        step=int(metadata["step"]),
        phase=metadata["phase"],
        model={k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")},
        optimizer={"state": optimizer_state, "param_groups": optimizer_json["param_groups"]},
        shape_prior=prior or None,
        info=json.loads(metadata["info"]),
    )
