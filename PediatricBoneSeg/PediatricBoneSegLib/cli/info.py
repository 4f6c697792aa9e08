"""``pbseg info MODEL``: print a model file's manifest (JSON), a short summary and the file's warnings;
``--upgrade OUT`` re-saves it in the current format (for format-1 files, whose manifest no checksum covers)."""

from __future__ import annotations

import argparse
import json
import sys

from ..catalog import get_joint


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info", help="show a model file's manifest", description="Print the manifest of a model file and a summary."
    )
    parser.add_argument("model", metavar="MODEL", help="model file (.safetensors)")
    parser.add_argument(
        "--upgrade",
        metavar="OUT",
        help="after printing, re-save the model in the current format (same tensors and manifest; its "
        "checksum then covers the manifest too) to OUT: check the manifest first, the new checksum vouches for it",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..network.modelfile import FORMAT_VERSION, ModelFileError, load_model, read_manifest, resave_model
    from ..pipeline.quality import FEATURES

    try:
        loaded = load_model(args.model)  # verifies the checksum and the tensors, not only the header
        manifest = read_manifest(args.model)
    except ModelFileError as error:
        print(f"pbseg info: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(manifest, indent=2))
    architecture = loaded.manifest.architecture
    parameters = sum(p.numel() for p in loaded.network.parameters())
    size = loaded.manifest.preprocessing.size
    detection = loaded.manifest.detection
    print()
    print(f"model:      {loaded.manifest.name} {loaded.manifest.version} ({args.model})")
    print(
        f"network:    {architecture.encoder} U-Net, {parameters / 1e6:.1f} M parameters, input {size}x{size}, "
        + ("fully shared (one union head)" if architecture.shared else "domain-specific BN and heads")
    )
    for domain, joint in enumerate(loaded.manifest.joints):
        bones = ", ".join(bone.display_name for bone in get_joint(joint).bones)
        print(f"domain {domain}:   {joint} ({bones}); near-isotropic volumes sliced {loaded.manifest.planes[joint]}")
    if loaded.centroids is not None or loaded.classifier is not None:
        method = detection.method or "centroid"
        print(f"detection:  auto-detection on ({method}, scale {detection.scale}, threshold {detection.threshold})")
    else:
        print("detection:  none (give the joint with --joint)")
    quality = loaded.manifest.quality
    if quality is not None:
        figures = quality.get("calibration", {}).get("cross_validated", {}).get("present", {})
        measured = (
            f"; cross-validated: {figures['bad_flagged']:.0%} of bones with Dice < 0.7 flagged, "
            f"{figures['good_flagged']:.0%} of bones with Dice >= 0.85"
            if {"bad_flagged", "good_flagged"} <= set(figures)
            else ""
        )
        threshold = quality.get("threshold")
        shown = f"{threshold:.3f}" if isinstance(threshold, float) else threshold
        if quality.get("features") != list(FEATURES):
            print(
                "quality:    calibrated on another version's features (the conservative default applies: "
                "recalibrate with python -m pbseg_training.calibrate_quality)"
            )
        else:
            print(f"quality:    calibrated, threshold {shown}{measured}")
    else:
        print("quality:    not calibrated (the conservative default applies)")
    provenance = loaded.manifest.provenance
    if provenance:
        facts = ", ".join(
            f"{k}={provenance[k]}" for k in ("scheme", "steps", "date", "code_version") if k in provenance
        )
        print(f"training:   {facts}")
    for warning in loaded.warnings:
        print(f"warning:    {warning}")
    if args.upgrade:
        try:
            saved = resave_model(loaded, args.upgrade)
        except OSError as error:
            print(f"pbseg info: error: cannot write {args.upgrade}: {error}", file=sys.stderr)
            return 2
        print(f"upgraded:   {saved} (format {FORMAT_VERSION})")
    return 0
