"""2D image classifiers with torchvision-compatible names, and checked pretrained-weight loading.

Importing the package registers every architecture, so ``create_model_2d`` knows them all.
"""

import image2point.models2d.hrnet  # noqa: F401  (registers hrnet_w18 / hrnet_w48)
from image2point.models2d.cifar_resnet import CifarBasicBlock, CifarResNet, ShortcutA, cifar_resnet
from image2point.models2d.loading import (
    LoadReport,
    ShapeMismatch,
    build_pretrained_2d,
    load_pretrained_2d,
    match_state_dict,
    read_checkpoint,
    read_state_dict,
)
from image2point.models2d.registry import (
    KNOWN_WEIGHTS,
    MODELS_2D,
    ImageClassifier2D,
    PretrainedWeights,
    create_model_2d,
    get_known_weights,
    list_known_weights,
    list_models_2d,
    register_model_2d,
)
from image2point.models2d.resnet import BasicBlock, Bottleneck, ResNet
from image2point.models2d.vgg import VGG, VGGConfig

__all__ = [
    "KNOWN_WEIGHTS",
    "MODELS_2D",
    "VGG",
    "BasicBlock",
    "Bottleneck",
    "CifarBasicBlock",
    "CifarResNet",
    "ImageClassifier2D",
    "LoadReport",
    "PretrainedWeights",
    "ResNet",
    "ShapeMismatch",
    "ShortcutA",
    "VGGConfig",
    "build_pretrained_2d",
    "cifar_resnet",
    "create_model_2d",
    "get_known_weights",
    "list_known_weights",
    "list_models_2d",
    "load_pretrained_2d",
    "match_state_dict",
    "read_checkpoint",
    "read_state_dict",
    "register_model_2d",
]
