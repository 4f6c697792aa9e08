"""``pbseg-train CONFIG [--resume] [-o OUTDIR]``: one command per run (``torchrun`` for several processes)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import load_config
from .trainer import train


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pbseg-train", description="Train a PediatricBoneSeg network.")
    parser.add_argument("config", type=Path, help="training configuration (TOML)")
    parser.add_argument("-o", "--output", type=Path, help="run folder (default: runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    parser.add_argument("--steps", type=int, help="override the number of steps")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.steps:
            config = config.with_overrides(steps=args.steps)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    output = args.output or Path("runs") / config.name
    model = train(config, output, resume=args.resume)
    print(f"model written to {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
