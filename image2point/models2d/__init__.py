"""2D image classifiers with torchvision-compatible names, and checked pretrained-weight loading.

Importing the package registers every architecture, so ``create_model_2d`` knows them all.
"""

import image2point.models2d.hrnet  # noqa: F401  (registers hrnet_w18 / hrnet_w48)
import image2point.models2d.convnext  # noqa: F401  (registers convnext_tiny, convnext_small)
import image2point.models2d.densenet  # noqa: F401  (registers densenet121, densenet169)
import image2point.models2d.efficientnet  # noqa: F401  (registers efficientnet_b0, efficientnet_b1)
import image2point.models2d.espnet  # noqa: F401  (registers espnet_c)
import image2point.models2d.espnetv2  # noqa: F401  (registers espnetv2, espnetv2_base)
import image2point.models2d.mobilenet_v1  # noqa: F401  (registers mobilenet_v1, mobilenet_v1_x0_25)
import image2point.models2d.mobilenet_v2  # noqa: F401  (registers mobilenet_v2)
import image2point.models2d.mobilenet_v3  # noqa: F401  (registers mobilenet_v3_large, mobilenet_v3_small)
import image2point.models2d.regnet  # noqa: F401  (registers regnet_{x,y}_{400,800}mf)
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
    BackboneLayout,
    DenseFeatures2D,
    ImageClassifier2D,
    PretrainedWeights,
    create_model_2d,
    get_known_weights,
    list_known_weights,
    list_models_2d,
    register_known_weights,
    register_model_2d,
    torchvision_imagenet_weights,
)
from image2point.models2d.resnet import BasicBlock, Bottleneck, ResNet
from image2point.models2d.vgg import VGG, VGGConfig

__all__ = [
    "KNOWN_WEIGHTS",
    "MODELS_2D",
    "VGG",
    "BackboneLayout",
    "BasicBlock",
    "Bottleneck",
    "CifarBasicBlock",
    "CifarResNet",
    "DenseFeatures2D",
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
    "register_known_weights",
    "register_model_2d",
    "torchvision_imagenet_weights",
]
