"""Do generated images show their intended class? A small CNN trained on real Fashion-MNIST is scored on them.

    dra-pipeline generate --teacher edm-fmnist --n 1000 --out fmnist-gen-1000.npz --seed 0
    python bench/generate_cas.py --samples fmnist-gen-1000.npz [--seed 0] [--epochs 3]

Trains the CNN (2 conv layers, ~0.4 M parameters, Adam) on the 60 k real training images, then reports its
accuracy on the 10 k real test images (how good the judge is) and on the generated images against the labels
they were sampled for (this "classification accuracy score" asks whether a class-conditional sample is
recognisably its class; Ravuri & Vinyals' CAS trains on samples instead). Accuracies come with n and a 95 %
Wilson interval.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dra_pipeline.data import open_source
from dra_pipeline.environment import describe, environment


def small_cnn() -> nn.Module:
    """28 x 28 x 1 -> 10 logits: conv 32, pool, conv 64, pool, linear 128, linear 10."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def as_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28, 1) -> float (N, 1, 28, 28) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion correct / n."""
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def report(name: str, pred: torch.Tensor, labels: np.ndarray) -> None:
    correct, n = int((pred.numpy() == labels).sum()), len(labels)
    lo, hi = wilson(correct, n)
    print(f"{name}: accuracy {correct / n:.4f} ({correct}/{n}, 95 % CI {lo:.4f}-{hi:.4f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=Path, default=Path("data/fmnist-gen-1000.npz"), help="generated npz")
    ap.add_argument("--seed", type=int, default=0, help="classifier init and batch order")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    print(describe(environment()))

    train, test, synth = (open_source(s) for s in ("fashion-mnist:train", "fashion-mnist:test", str(args.samples)))
    x_train, y_train = as_input(train.read(np.arange(len(train)))), torch.from_numpy(train.labels)
    model = small_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    order = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(x_train), generator=order).split(args.batch_size):
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        wall_s = time.perf_counter() - start
        print(f"epoch {epoch + 1}/{args.epochs}: last batch loss {loss.item():.3f}, {wall_s:.0f} s")
    model.eval()

    print(f"classifier: small CNN, {len(x_train)} real training images, {args.epochs} epochs, seed {args.seed}")
    report(f"real test set ({test.name})", predict(model, as_input(test.read(np.arange(len(test))))), test.labels)
    pred = predict(model, as_input(synth.read(np.arange(len(synth)))))
    report(f"generated ({args.samples.name}, intended labels)", pred, synth.labels)
    per_class = [float((pred.numpy() == synth.labels)[synth.labels == c].mean()) for c in range(synth.num_classes)]
    print("generated, per class:", " ".join(f"{c}:{a:.2f}" for c, a in enumerate(per_class)))


if __name__ == "__main__":
    main()
