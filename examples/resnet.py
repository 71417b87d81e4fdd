"""A torchvision ResNet-18 adapted to small images, for ``--model examples.resnet:build``.

ResNet-18 was made for 224x224 ImageNet images: its 7x7 stride-2 first convolution and the
max-pool after it shrink a 32x32 image to 8x8 before the first residual block. For CIFAR-10
sized inputs the usual adaptation (He et al. 2016, section 4.2) keeps the resolution: a 3x3
stride-1 first convolution and no max-pool. Run from the repository root::

    bsopt search --model examples.resnet:build --dataset cifar10 --batch-size 32:256 \\
        --epochs 10 --workers 2
    bsopt search --model examples.resnet:build --model-args '{"zero_init_residual": true}'
"""

from __future__ import annotations

import torchvision
from torch import nn


def build(input_shape: tuple[int, int, int], num_classes: int, *,
          zero_init_residual: bool = False) -> nn.Module:
    """ResNet-18 for ``input_shape`` (channels, height, width) images and ``num_classes``.

    Args:
        input_shape: One example's (channels, height, width); any channel count.
        num_classes: Outputs of the last layer.
        zero_init_residual: Start each residual branch at zero (Goyal et al. 2017), which
            helps large batches; a ``[model_args]`` entry in a study's TOML file.
    """
    network = torchvision.models.resnet18(weights=None, num_classes=num_classes,
                                          zero_init_residual=zero_init_residual)
    network.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1,
                              bias=False)
    network.maxpool = nn.Identity()
    return network
