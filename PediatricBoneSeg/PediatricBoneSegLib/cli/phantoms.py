"""``pbseg phantoms``: write a raw-layout dataset of pediatric joint phantoms (and a QC montage)."""

from __future__ import annotations

import argparse
import sys

from ..catalog import JOINT_KEYS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "phantoms",
        help="generate a dataset of synthetic pediatric joint MR phantoms",
        description="Write N phantoms of one joint in the nnU-Net/MSD raw layout "
        "(imagesTr/, labelsTr/, dataset.json with the catalog's labels).",
    )
    parser.add_argument("--joint", required=True, choices=JOINT_KEYS)
    parser.add_argument("--n", type=int, required=True, help="number of cases")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (case i uses a seed derived from it)")
    parser.add_argument("-o", "--output", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--format", dest="file_format", choices=("nii.gz", "nrrd"), default="nii.gz")
    parser.add_argument("--voxel-scale", type=float, default=1.0, help="voxel size multiplier (>1: smaller volumes)")
    parser.add_argument("--montage", help="also write a QC montage PNG of the first cases")
    parser.add_argument(
        "--generator",
        choices=("1.0", "2.0"),
        default="2.0",
        help="generator version: 2.0 draws a clinical protocol per case (default); 1.0 one contrast per joint",
    )
    parser.add_argument(
        "--exclude-protocols",
        nargs="+",
        default=(),
        metavar="FAMILY",
        help="protocol families no case may have (generator 2.0), e.g. T1 T1_FS for a leave-one-out study",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pbseg_training.phantoms import case_seed, generate_phantom, write_phantom_dataset
    from pbseg_training.phantoms.montage import save_montage

    if args.n < 1:
        print("pbseg phantoms: --n must be at least 1", file=sys.stderr)
        return 2
    try:
        out = write_phantom_dataset(
            args.joint,
            args.n,
            args.seed,
            args.output,
            args.file_format,
            args.voxel_scale,
            args.generator,
            tuple(args.exclude_protocols),
        )
    except (FileExistsError, ValueError) as error:
        print(f"pbseg phantoms: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.n} {args.joint} phantoms to {out}")
    if args.montage:
        cases = [
            generate_phantom(args.joint, case_seed(args.seed, i), voxel_scale=args.voxel_scale, version=args.generator)
            for i in range(min(3, args.n))
        ]
        print(f"wrote montage {save_montage(cases, args.montage)}")
    return 0
