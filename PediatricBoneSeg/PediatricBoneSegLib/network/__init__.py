"""The multi-domain segmentation network (plain PyTorch: no torchvision, timm or MONAI)."""

from .config import ENCODERS, FeatureScale, NetworkConfig
from .imagenet import load_imagenet_encoder
from .unet import MultiDomainUNet, NetworkOutput

__all__ = ["ENCODERS", "FeatureScale", "MultiDomainUNet", "NetworkConfig", "NetworkOutput", "load_imagenet_encoder"]
