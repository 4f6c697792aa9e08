"""Convert a PyTorch state-dict file (e.g. torchvision ImageNet weights ``resnet50-*.pth``) to
``.safetensors`` once, so that training reads it without any unpickling afterwards.

Usage: python training/scripts/convert_state_dict.py INPUT.pth OUTPUT.safetensors
"""

from __future__ import annotations

import sys
from pathlib import Path

from safetensors.torch import save_file

from PediatricBoneSegLib.network.imagenet import read_state_dict


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    state = {key: tensor.contiguous() for key, tensor in read_state_dict(source).items()}
    save_file(state, str(target), metadata={"source": source.name})
    print(f"{len(state)} tensors written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
