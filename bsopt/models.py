"""The seeds' reference networks, adapting to the input's channels and size."""

from __future__ import annotations

from torch import nn


class SeedCNN(nn.Module):
    """conv 32 -> conv 64 -> max-pool -> dropout -> fc 128 -> fc classes (the seeds' CNN).

    3x3 convolutions without padding, as in the seeds; inputs smaller than 6x6 get padding
    so that the 8x8 digits fit too.
    """

    def __init__(self, in_channels: int = 1, height: int = 28, width: int = 28,
                 num_classes: int = 10) -> None:
        super().__init__()
        padding = 1 if min(height, width) < 6 else 0
        out_h, out_w = (height - 4 + 4 * padding) // 2, (width - 4 + 4 * padding) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=padding), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=padding), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(64 * out_h * out_w, 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):  # noqa: D102
        return self.classifier(self.features(x))


class SeedMLP(nn.Module):
    """flatten -> fc 256 -> fc 128 -> fc classes (the seeds' MLP, 784-256-128-10 on MNIST)."""

    def __init__(self, in_channels: int = 1, height: int = 28, width: int = 28,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * height * width, 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, num_classes),
        )

    def forward(self, x):  # noqa: D102
        return self.net(x)


MODELS = {"cnn": SeedCNN, "mlp": SeedMLP}


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The reference network ``name`` for inputs of ``input_shape`` (C, H, W)."""
    channels, height, width = input_shape
    return MODELS[name](channels, height, width, num_classes)
