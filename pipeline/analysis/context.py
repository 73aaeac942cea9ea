"""What every analysis reads: the classifier, its images, the stored teacher features and the teacher, and the
expensive intermediate results (PGD examples, representations) computed once and shared between analyses.

Each cached value is computed the same way whichever analysis asks first, so an analysis's numbers do not depend
on which others ran before it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from dra_pipeline.analysis.adversarial import PGD_STEPS, Views, pgd_views, representations
from dra_pipeline.analysis.cknna import K_NEIGHBOURS
from dra_pipeline.analysis.sae import EXPANSION, LR, STEPS
from dra_pipeline.analysis.teacher_features import batched_teacher_features
from dra_pipeline.models import Classifier
from dra_pipeline.teachers import Teacher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Labelled:
    """Images with labels and the dataset rows that seed the teacher's noise for them."""

    x: Tensor  # (N, C, H, W) float32 in [0, 1]
    y: Tensor  # (N,) int64
    rows: np.ndarray  # (N,) int64


@dataclass(frozen=True)
class Settings:
    what: tuple[str, ...] | None = None  # analyses to run (None: every registered one)
    seed: int = 0  # PGD random starts and SAE initialisation
    pgd_steps: int = PGD_STEPS  # evaluation PGD iterations (step 2.5 eps / steps)
    cknna_k: int = K_NEIGHBOURS  # neighbourhood size of the reported CKNNA and mutual-kNN numbers
    cknna_ks: tuple[int, ...] = (5, 10, 20, 50)  # neighbourhood sizes drawn in the CKNNA figure
    sae_ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # active latents per SAE
    sae_expansion: int = EXPANSION  # SAE latents per representation dimension
    sae_steps: int = STEPS  # Adam steps per SAE
    sae_lr: float = LR
    probe_attack_n: int = 200  # test images attacked through the teacher (the costly part on a CPU)
    batch_size: int = 256


@dataclass
class Context:
    model: Classifier  # eval mode
    eps: float  # L-inf radius, pixels in [0, 1]
    num_classes: int
    test: Labelled  # images to attack and measure
    train: Labelled  # training images (CKNNA rows, SAE and probe training)
    stored: np.ndarray | None  # (len(train), len(views), dim) teacher features of the train rows, or None
    views: tuple[str, ...]  # the store's views
    teacher: Teacher | None  # the network the store was made with, or None
    settings: Settings = field(default_factory=Settings)
    _cache: dict = field(default_factory=dict)

    def _cached(self, key: str, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def test_views(self) -> Views:
        """Clean and PGD representations of the test images (seed: settings.seed)."""
        s = self.settings

        def compute():
            log.info(f"PGD-{s.pgd_steps} on {len(self.test.x)} test images")
            return pgd_views(
                self.model,
                self.test.x,
                self.test.y,
                eps=self.eps,
                steps=s.pgd_steps,
                seed=s.seed,
                batch_size=s.batch_size,
            )

        return self._cached("test", compute)

    def train_views(self) -> Views:
        """Clean and PGD representations of the training images (seed: settings.seed + 1)."""
        s = self.settings
        return self._cached(
            "train",
            lambda: pgd_views(
                self.model,
                self.train.x,
                self.train.y,
                eps=self.eps,
                steps=s.pgd_steps,
                seed=s.seed + 1,
                batch_size=s.batch_size,
            ),
        )

    def train_representations(self) -> Tensor:
        """Penultimate representations (N, D) of the clean training images."""
        return self._cached("train-reps", lambda: representations(self.model, self.train.x))

    def teacher_test(self, which: str) -> Tensor:
        """Teacher features (N, dim) of the clean test images ("clean") or of their PGD examples ("adv")."""

        def compute():
            x = self.test.x if which == "clean" else self.test_views().x_adv
            return batched_teacher_features(self.teacher, x, self.test.rows)

        return self._cached(f"teacher-{which}", compute)

    def stored_view(self, view: str = "clean") -> Tensor:
        """The stored features of the training rows at `view` (the first view when the store lacks it)."""
        import torch

        index = self.views.index(view) if view in self.views else 0
        return torch.from_numpy(self.stored[:, index].astype(np.float32))
