"""Small networks that adversarially train in minutes on a CPU (Fashion-MNIST, 28 x 28 x 1).

SmallCNN follows the TRADES paper's MNIST network (four 3x3 convolutions, two 200-unit fully connected layers)
with SiLU and batch norm; its penultimate representation is the 200-unit layer. `batch_norm=False` drops the
batch norms: its outputs then do not depend on how a batch is split (DDP equivalence tests, BN ablations).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from dra_pipeline.models.base import Classifier


class SmallCNN(Classifier):
    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 1,
        image_size: int = 28,
        width: int = 32,
        batch_norm: bool = True,
        mean: Sequence[float],
        std: Sequence[float],
    ):
        super().__init__(mean, std)

        def conv(cin, cout):
            if not batch_norm:
                return [nn.Conv2d(cin, cout, 3), nn.SiLU()]
            return [nn.Conv2d(cin, cout, 3, bias=False), nn.BatchNorm2d(cout), nn.SiLU()]

        self.body = nn.Sequential(
            *conv(in_channels, width),
            *conv(width, width),
            nn.MaxPool2d(2),
            *conv(width, 2 * width),
            *conv(2 * width, 2 * width),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        side = ((image_size - 4) // 2 - 4) // 2  # 28 -> 4
        self.fc = nn.Sequential(nn.Linear(2 * width * side * side, 200), nn.SiLU(), nn.Linear(200, 200), nn.SiLU())
        self.feature_dim = 200
        self.head = nn.Linear(200, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.fc(self.body(self.normalise(x)))
