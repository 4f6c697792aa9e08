"""Inference benchmark (issue 8): the whole ``pbseg segment`` of a standard knee volume,
the network stage of a paper-sized ResNet-50 U-Net against a MONAI baseline, the machine's matrix
product rates and the peak memory of a 512x512x400 volume.

    .venv/bin/python benchmarks/inference.py [--model FILE] [--repeats 3] [--quick] [--ablation]

Volumes: a knee phantom (``generate_phantom("knee", 11, age_years=12, version="1.0")``) resampled (linear) onto
384x384x160 voxels of 0.365x0.365x0.7 mm (the standard volume) and 512x512x400 voxels of 0.3 mm,
saved as int16 NIfTI. Each timing is the median of ``--repeats`` runs after a warm-up run.

- ``end_to_end_s``: ``pbseg segment`` of the standard volume (read -> write, surfaces included;
  the same function as the command line, model already loaded), stages from its report.json.
- ``r50_network_s``: ``inference.predict_slices`` (the network stage: slices -> network -> labels
  on the slice grid) with a ResNet-50 U-Net (random weights, 256 px input) through the fast path.
- baseline: the same ResNet-50 network, fp32, NCHW, through MONAI's ``SliceInferer`` as a MONAI
  user would run a 2D network trained on 256x256 inputs over the 384x384 slices: roi (256, 256),
  overlap 0.25 (MONAI's default, 2x2 windows per slice), the same batch size, ``torch.no_grad``,
  the same thread count as our run (so a busy core does not inflate the ratio). Printed beside it:
  the same-work ratio (plain fp32 NCHW forward of our 256x256 inputs / fast path).
- ``bf16_peak_fraction``: FLOP/s of the ResNet-50 network stage (convolutions counted with
  ``FlopCounterMode``) / the measured bf16 matrix-product rate; the fp32 fraction is printed too.
- ``peak_rss_gb``: ``ru_maxrss`` of a child process running ``pbseg segment`` on the 512x512x400
  volume (joint auto-detected, surfaces written).
- ``cli_wall_s``: wall time of a whole ``pbseg segment`` process (start-up and imports included) of
  the standard volume with the bundled model (or ``--model``), as a user waits for it.
- ``batch_cases_per_min``: 10 copies of the standard volume in one ``pbseg segment`` process.
- ``after_network_s`` (and ``adult_after_network_s``): post-process + surfaces + morphometry +
  clinical measurements + write of the standard volume (and of the same grid through an
  adult-sized knee, the phantom at 17 years).

``--segment-only`` measures only the whole-command figures (no ResNet-50, MONAI or matrix products).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from torch.utils.flop_counter import FlopCounterMode

from pbseg_training.phantoms import generate_phantom
from PediatricBoneSegLib.catalog import JOINT_KEYS, get_joint
from PediatricBoneSegLib.cli import main as pbseg
from PediatricBoneSegLib.host import available_threads
from PediatricBoneSegLib.network import MultiDomainUNet, NetworkConfig
from PediatricBoneSegLib.network.config import PreprocessingConfig
from PediatricBoneSegLib.network.modelfile import LoadedModel, ModelManifest, load_model, save_model
from PediatricBoneSegLib.network.subpixel import SubpixelDecoderBlock
from PediatricBoneSegLib.pipeline.acceleration import (
    fold_batch_norm,
    inference_threads,
    prepare_network,
)
from PediatricBoneSegLib.pipeline.inference import predict_slices, resolve_precision
from PediatricBoneSegLib.pipeline.preprocessing import SlicedVolume, slice_volume
from PediatricBoneSegLib.resources import bundled_model_path

STANDARD = ((384, 384, 160), (0.365, 0.365, 0.7))
LARGE = ((512, 512, 400), (0.3, 0.3, 0.3))
QUICK_STANDARD = ((96, 96, 12), (1.46, 1.46, 9.0))
QUICK_LARGE = ((128, 128, 100), (1.2, 1.2, 1.2))
PHANTOM_SEED = 11
PHANTOM_VERSION = "1.0"  # pinned: generator 1.0's output never changes, so runs stay comparable
ADULT_AGE = 17.0  # the phantom generator's oldest age: adult-sized bones
BATCH_CASES = 10
AFTER_NETWORK = ("postprocess", "surfaces", "morphometry", "clinical_measurements", "write")
STAGES = (
    "read",
    "load_model",
    "preprocess",
    "detect_joint",
    "network",
    "postprocess",
    "surfaces",
    "morphometry",
    "clinical_measurements",
    "write",
)
BATCH = 16
ROI = (256, 256)


def knee_volume(size: tuple[int, int, int], spacing: tuple[float, float, float], age_years: float = 12) -> sitk.Image:
    """The knee phantom resampled onto ``size`` voxels of ``spacing`` mm, same orientation and
    centre as the phantom's own scan, as int16 (what scanners write)."""
    source = generate_phantom("knee", PHANTOM_SEED, age_years=age_years, version=PHANTOM_VERSION).image
    centre = np.asarray(source.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in source.GetSize()]))
    direction = np.asarray(source.GetDirection()).reshape(3, 3)
    origin = centre - direction @ (np.asarray(spacing) * (np.asarray(size) - 1) / 2)
    resampled = sitk.Resample(
        source, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), spacing, source.GetDirection(), 0.0
    )
    return sitk.Cast(sitk.Round(resampled), sitk.sitkInt16)


def median_time(
    run: Callable[[], object], repeats: int, warm_up: Callable[[], object] | None = None
) -> tuple[float, list[float]]:
    """Median wall time of ``repeats`` calls after one warm-up call (of ``warm_up``, default ``run``)."""
    (warm_up or run)()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def matmul_rate(dtype: torch.dtype, threads: int) -> float:
    """FLOP/s of a square matrix product, grown until one product takes 0.2 s (an emulated format
    is slow: small sizes suffice)."""
    with inference_threads(threads):
        for size in (256, 512, 1024, 2048, 4096):
            a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
            seconds, _ = median_time(lambda a=a, b=b: a @ b, 3)
            if seconds > 0.2 or size == 4096:
                return 2 * size**3 / seconds
    raise AssertionError("unreachable")


def segment_end_to_end(volume: Path, outdir: Path, model: str | None, repeats: int) -> dict[str, float]:
    """``pbseg segment`` timings: whole call and each stage of report.json (medians)."""
    argv = ["segment", str(volume), "-o", str(outdir), "--overwrite", *(["--model", model] if model else [])]
    reports: list[dict[str, float]] = []

    def run() -> None:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            code = pbseg(argv)
        if code != 0:
            raise RuntimeError(f"pbseg segment failed:\n{printed.getvalue()}")
        report = json.loads((outdir / volume.name.split(".")[0] / "report.json").read_text())
        reports.append({**report["timings_s"], "total": time.perf_counter() - start})

    median_time(run, repeats)
    timed = reports[1:]
    return {key: statistics.median(r.get(key, 0.0) for r in timed) for key in (*STAGES, "total")}


def pbseg_process(inputs: list[Path], outdir: Path, model: str | None) -> list[str]:
    """The command line of a whole ``pbseg segment`` process."""
    command = [sys.executable, "-c", "import sys; from PediatricBoneSegLib.cli import main; sys.exit(main())"]
    return [
        *command,
        "segment",
        *map(str, inputs),
        "-o",
        str(outdir),
        "--overwrite",
        *(["--model", model] if model else []),
    ]


def process_wall_time(inputs: list[Path], outdir: Path, model: str | None, repeats: int) -> float:
    """Median wall time of a whole ``pbseg segment`` process of ``inputs`` (after a warm-up run)."""

    def run() -> None:
        completed = subprocess.run(pbseg_process(inputs, outdir, model), capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError(
                f"pbseg segment failed ({exit_status(completed.returncode)}):\n"
                f"{completed.stdout[-2000:]}{completed.stderr[-2000:]}"
            )

    return median_time(run, repeats)[0]


def exit_status(returncode: int) -> str:
    """How a child process ended, in words: a negative code is the signal that killed it (SIGKILL
    with no message is what the kernel's out-of-memory killer leaves)."""
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


def batch_folder(volume: Path, folder: Path, count: int) -> Path:
    """``count`` copies of ``volume`` in ``folder`` (one case each)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        shutil.copyfile(volume, folder / f"case{index:02d}.nii.gz")
    return folder


def resnet50_model(path: Path) -> LoadedModel:
    """A ResNet-50 U-Net of the bundled model's format (3 joints, 256 px input), random weights."""
    torch.manual_seed(0)
    config = NetworkConfig("resnet50", tuple(get_joint(j).num_classes for j in JOINT_KEYS))
    manifest = ModelManifest("r50-benchmark", "0", config, list(JOINT_KEYS), PreprocessingConfig(size=256))
    return load_model(save_model(path, MultiDomainUNet(config), manifest))


def sliced_knee(image: sitk.Image, loaded: LoadedModel) -> SlicedVolume:
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    return slice_volume(array, image.GetSpacing(), image.GetDirection(), "sagittal", loaded.manifest.preprocessing)


def first_batch(sliced: SlicedVolume) -> SlicedVolume:
    """The first ``BATCH`` slices: the warm-up of the ResNet-50 runs."""
    return dataclasses.replace(sliced, slices=sliced.slices[:BATCH])


def network_stage(loaded: LoadedModel, sliced: SlicedVolume, repeats: int) -> tuple[float, float, int]:
    """Median seconds of ``predict_slices`` (the fast path), its FLOPs (convolutions are linear in
    the slice count: counted on the warm-up batch and scaled) and the threads it would use now."""
    device = torch.device("cpu")
    precision = resolve_precision("auto", device)
    warm = first_batch(sliced)
    with FlopCounterMode(display=False) as counter:
        predict_slices(loaded, warm, "knee", device, precision, BATCH)
    flops = counter.get_total_flops() * len(sliced.slices) / len(warm.slices)
    threads = available_threads()
    run = lambda: predict_slices(loaded, sliced, "knee", device, precision, BATCH)  # noqa: E731
    seconds, _ = median_time(run, repeats, warm_up=lambda: None)  # the counted run warmed up
    return seconds, float(flops), threads


def monai_baseline(loaded: LoadedModel, sliced: SlicedVolume, threads: int, repeats: int) -> float:
    """The same network, fp32 NCHW, through MONAI's SliceInferer over the native slices."""
    from monai.inferers import SliceInferer

    domain = loaded.domain_of("knee")
    network = loaded.network.eval()
    volume = torch.from_numpy(np.ascontiguousarray(np.moveaxis(sliced.slices, 0, -1)))[None, None]  # [1,1,H,W,N]
    inferer = SliceInferer(roi_size=ROI, sw_batch_size=BATCH, spatial_dim=2, overlap=0.25, progress=False)

    def run(volume: torch.Tensor = volume) -> None:
        with torch.no_grad(), inference_threads(threads):
            inferer(volume, lambda x: network(x, domain).logits[domain])

    return median_time(run, repeats, lambda: run(volume[..., :BATCH]))[0]


def plain_fp32(loaded: LoadedModel, sliced: SlicedVolume, threads: int, repeats: int) -> float:
    """Same work as the fast path (our 256x256 inputs), unprepared network, NCHW fp32."""
    domain = loaded.domain_of("knee")
    count = len(sliced.slices)

    def run(count: int = count) -> None:
        with torch.no_grad(), inference_threads(threads):
            for begin in range(0, count, BATCH):
                loaded.network(sliced.network_input(begin, min(begin + BATCH, count)), domain)

    return median_time(run, repeats, lambda: run(BATCH))[0]


def ablation(loaded: LoadedModel, sliced: SlicedVolume, label: str, rounds: int) -> None:
    """Each trick alone and together: CPU time of one thread per slice of a 16-slice batch, the
    variants interleaved over ``rounds`` (CPU time of one thread is what other jobs on the
    machine disturb least)."""
    domain = loaded.domain_of("knee")
    middle = len(sliced.slices) // 2
    batch = sliced.network_input(max(0, middle - BATCH // 2), min(len(sliced.slices), middle + BATCH // 2))
    last = batch.contiguous(memory_format=torch.channels_last)
    folded = copy.deepcopy(loaded.network)
    fold_batch_norm(folded, folded.config.norm_set_of(domain))
    fast = prepare_network(loaded.network, domain, torch.device("cpu"))
    assert any(isinstance(block, SubpixelDecoderBlock) for block in fast.decoder.blocks)
    variants = {
        "plain NCHW": (loaded.network, batch),
        "channels_last": (copy.deepcopy(loaded.network).to(memory_format=torch.channels_last), last),
        "BN folded": (folded, batch),
        "BN folded + channels_last": (copy.deepcopy(folded).to(memory_format=torch.channels_last), last),
        "all: + sub-pixel decoder": (fast, last),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode(), inference_threads(1):
        for network, inputs in variants.values():
            network(inputs, domain)
        for _ in range(rounds):
            for name, (network, inputs) in variants.items():
                start = time.process_time()
                network(inputs, domain)
                times[name].append((time.process_time() - start) / len(inputs))
    plain = statistics.median(times["plain NCHW"])
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"ablation {label:9s} {name:29s} {seconds * 1000:7.1f} ms/slice (1 thread)  {plain / seconds:.2f}x")


def peak_rss_gb(volume: Path, outdir: Path, model: str | None) -> float:
    """Peak resident memory of ``pbseg segment`` in a child process (a small wrapper process waits
    for it, so nothing of this process's memory is counted)."""
    command = pbseg_process([volume], outdir, model)
    wrapper = (
        "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if code == 0 else -1)"
    )
    output = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, check=True)
    kilobytes = int(output.stdout.strip().splitlines()[-1])
    if kilobytes < 0:
        raise RuntimeError(f"pbseg segment of {volume} failed: {output.stderr[-2000:]}")
    return kilobytes * 1024 / 1e9


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model for the whole segment (default: the bundled model)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (after a warm-up)")
    parser.add_argument("--quick", action="store_true", help="small volumes, one repeat: a smoke run")
    parser.add_argument("--ablation", action="store_true", help="also time each fast-path trick alone")
    parser.add_argument("--segment-only", action="store_true", help="only the whole-command figures (no ResNet-50)")
    parser.add_argument("--workdir", type=Path, help="keep the volumes and outputs here (default: a temp folder)")
    args = parser.parse_args(argv)
    if args.model is None and not bundled_model_path().is_file():
        parser.error(f"the bundled model {bundled_model_path()} is missing: give --model")
    repeats = 1 if args.quick else max(1, args.repeats)
    standard, large = (QUICK_STANDARD, QUICK_LARGE) if args.quick else (STANDARD, LARGE)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pbseg-benchmark-"))
    workdir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, float] = {}
    try:
        print(f"volumes: standard {standard[0]} @ {standard[1]} mm, large {large[0]} @ {large[1]} mm; {workdir}")
        image = knee_volume(*standard)
        volume = workdir / "standard.nii.gz"
        sitk.WriteImage(image, str(volume), useCompression=True)
        sitk.WriteImage(knee_volume(*standard, age_years=ADULT_AGE), str(workdir / "adult.nii.gz"), useCompression=True)
        step("whole pbseg segment of the standard volume (in this process)")
        e2e = segment_end_to_end(volume, workdir / "out", args.model, repeats)
        step("the same of an adult-sized knee")
        adult = segment_end_to_end(workdir / "adult.nii.gz", workdir / "out", args.model, repeats)
        step("whole pbseg segment process of the standard volume")
        figures["cli_wall_s"] = process_wall_time([volume], workdir / "out", args.model, repeats)
        step(f"{BATCH_CASES} standard volumes in one pbseg segment process")
        batch = batch_folder(volume, workdir / "batch", BATCH_CASES)
        batch_seconds = process_wall_time([batch], workdir / "batch_out", args.model, max(1, repeats - 1))
        figures["batch_cases_per_min"] = 60 * BATCH_CASES / batch_seconds

        if not args.segment_only:
            r50 = resnet50_model(workdir / "r50.safetensors")
            sliced = sliced_knee(image, r50)
            step("ResNet-50 network stage, fast path")
            ours, flops, threads = network_stage(r50, sliced, repeats)
            step("ResNet-50 through MONAI SliceInferer (the longest part)")
            baseline = monai_baseline(r50, sliced, threads, repeats)
            step("ResNet-50, plain fp32 on the same inputs")
            same_work = plain_fp32(r50, sliced, threads, repeats)
            if args.ablation:
                step("ablation")
                bundled = load_model(args.model or bundled_model_path())
                ablation(bundled, sliced_knee(image, bundled), "bundled", 3 * repeats)
                ablation(r50, sliced, "resnet50", repeats)
            step("matrix-product rates")
            fp32_rate, bf16_rate = matmul_rate(torch.float32, threads), matmul_rate(torch.bfloat16, threads)

        step("peak memory of pbseg segment on the large volume")
        sitk.WriteImage(knee_volume(*large), str(workdir / "large.nii"))
        rss = peak_rss_gb(workdir / "large.nii", workdir / "out", args.model)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"\nwhole segment ({'bundled model' if args.model is None else args.model}), seconds, standard / adult-sized:"
    )
    for stage in STAGES:
        print(f"  {stage:12s} {e2e[stage]:8.3f} {adult[stage]:8.3f}")
    print(f"  {'total':12s} {e2e['total']:8.3f} {adult['total']:8.3f}  (in this process, model already loaded)")
    figures["after_network_s"] = sum(e2e[stage] for stage in AFTER_NETWORK)
    figures["adult_after_network_s"] = sum(adult[stage] for stage in AFTER_NETWORK)
    print(
        f"  after the network ({' + '.join(AFTER_NETWORK)}): {figures['after_network_s']:.3f} "
        f"{figures['adult_after_network_s']:.3f}"
    )
    print(
        f"whole pbseg segment process: {figures['cli_wall_s']:.3f} s; {BATCH_CASES} cases in one process: "
        f"{batch_seconds:.1f} s ({figures['batch_cases_per_min']:.1f} cases/min)"
    )
    if not args.segment_only:
        slices, achieved = len(sliced.slices), flops / ours
        print(f"\nResNet-50 U-Net network stage, {slices} slices, {threads} thread(s), batch {BATCH}:")
        print(
            f"  fast path (predict_slices)   {ours:8.3f} s  {slices / ours:6.1f} slices/s  "
            f"{achieved / 1e9:6.1f} GFLOP/s"
        )
        print(f"  MONAI SliceInferer baseline  {baseline:8.3f} s  (roi {ROI}, overlap 0.25, fp32 NCHW)")
        print(f"  plain fp32 NCHW, same work   {same_work:8.3f} s  (same-work speedup {same_work / ours:.2f}x)")
        print(f"  FLOPs {flops / 1e9:.1f} G ({flops / slices / 1e9:.2f} G/slice)")
        print(f"  whole command vs the MONAI network pass alone: {baseline / figures['cli_wall_s']:.2f}x")
        rates = f"fp32 {fp32_rate / 1e9:.1f} GFLOP/s, bf16 {bf16_rate / 1e9:.2f} GFLOP/s"
        print(f"\nmatrix products ({threads} thread(s)): {rates}")
        print(f"  network stage / fp32 rate = {achieved / fp32_rate:.3f}; / bf16 rate = {achieved / bf16_rate:.3f}")
        figures = {
            "speedup_vs_baseline": baseline / ours,
            "end_to_end_s": e2e["total"],
            "r50_network_s": ours,
            "bf16_peak_fraction": achieved / bf16_rate,
            **figures,
        }
    else:
        figures = {"end_to_end_s": e2e["total"], **figures}
    print(f"peak RSS of pbseg segment on {large[0]}: {rss:.2f} GB")
    figures["peak_rss_gb"] = rss
    print(
        " ".join(
            f"{name}={value:.3f}" if "fraction" in name else f"{name}={value:.2f}" for name, value in figures.items()
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
