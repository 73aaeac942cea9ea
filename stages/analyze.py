"""The paper's representation analyses of one trained classifier (and, given its store, of the teacher features).

`analyze` takes everything as explicit inputs (model, images, stored features, teacher) and returns numbers
and figures; pipeline/analysis/report.py writes them to disk. Which analyses run is `settings.what`:

  align-uniform   alignment (image, PGD example) and uniformity of L2-normalised representations, for the
                  classifier and for teacher features (stored: clean vs flip view; recomputed: image vs PGD example)
  cls-dim         accuracy after projecting onto the top-k principal components; CLS-95/99, robust dimension
  cknna           CKNNA between the classifier's representation of training rows and their stored features
  sae             TopK sparse autoencoders on the representation for several k: normalised reconstruction loss
  frequency       mean centred Fourier magnitude of PGD perturbations and of input gradients
  teacher-probe   a linear probe on teacher features, clean and under PGD through the teacher (noise fixed)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from dra_pipeline.analysis import align_uniform, figures
from dra_pipeline.analysis.adversarial import PGD_STEPS, Views, input_gradients, pgd_views, representations
from dra_pipeline.analysis.cknna import K_NEIGHBOURS, cknna, mutual_knn
from dra_pipeline.analysis.cls_dimension import classification_dimension
from dra_pipeline.analysis.frequency import fourier_map
from dra_pipeline.analysis.sae import EXPANSION, LR, STEPS, sae_sweep
from dra_pipeline.analysis.teacher_probe import batched_teacher_features, teacher_probe
from dra_pipeline.linear_probe import linear_probe
from dra_pipeline.models import Classifier
from dra_pipeline.teachers import Teacher

ANALYSES = ("align-uniform", "cls-dim", "cknna", "sae", "frequency", "teacher-probe")
NEEDS_STORE = ("cknna",)  # analyses that cannot run without stored teacher features
NEEDS_TEACHER = ("teacher-probe",)  # analyses that cannot run without the teacher network


@dataclass(frozen=True)
class Settings:
    what: tuple[str, ...] = ANALYSES
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


@dataclass(frozen=True)
class Labelled:
    """Images with labels and the dataset rows that seed the teacher's noise for them."""

    x: Tensor  # (N, C, H, W) float32 in [0, 1]
    y: Tensor  # (N,) int64
    rows: np.ndarray  # (N,) int64


@dataclass
class Analysis:
    metrics: dict  # analysis name -> JSON-able numbers
    figures: dict[str, Figure]  # analysis name -> figure
    notes: dict[str, list[str]] = field(default_factory=dict)  # analysis name -> remarks for analysis.md
    seconds: dict[str, float] = field(default_factory=dict)  # analysis name -> wall time
    accuracy: dict = field(default_factory=dict)  # the classifier's clean and PGD accuracy on the test images


def analyze(
    model: Classifier,
    *,
    eps: float,
    num_classes: int,
    test: Labelled,
    train: Labelled,
    stored: np.ndarray | None,
    views: tuple[str, ...] = ("clean",),
    teacher: Teacher | None,
    settings: Settings = Settings(),
    log: Callable[[str], None] = lambda _msg: None,
) -> Analysis:
    """Run `settings.what` on `model` (eval mode) at L-inf radius eps (pixels in [0, 1]).

    test: images to attack and measure; train: training images (CKNNA rows, SAE and probe training);
    stored: (len(train), len(views), dim) teacher features of the train rows, or None (no store);
    teacher: the network the store was made with, or None. Analyses whose inputs are missing are skipped
    with a note.
    """
    unknown = [w for w in settings.what if w not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown analyses {unknown}; choose from {', '.join(ANALYSES)}")
    out = Analysis(metrics={}, figures={})
    cache: dict[str, object] = {}

    def test_views() -> Views:
        if "test" not in cache:
            log(f"PGD-{settings.pgd_steps} on {len(test.x)} test images")
            cache["test"] = pgd_views(
                model,
                test.x,
                test.y,
                eps=eps,
                steps=settings.pgd_steps,
                seed=settings.seed,
                batch_size=settings.batch_size,
            )
        return cache["test"]

    def teacher_test(which: str) -> Tensor:
        key = f"teacher-{which}"
        if key not in cache:
            x = test.x if which == "clean" else test_views().x_adv
            cache[key] = batched_teacher_features(teacher, x, test.rows)
        return cache[key]

    for name in ANALYSES:
        if name not in settings.what:
            continue
        if name in NEEDS_STORE and stored is None:
            out.notes[name] = ["skipped: no feature store (pass --features)"]
            continue
        if name in NEEDS_TEACHER and teacher is None:
            out.notes[name] = ["skipped: no teacher (the store's teacher could not be rebuilt, or no store)"]
            continue
        log(f"{name} ...")
        start = time.perf_counter()
        metrics, fig, notes = _RUNNERS[name](
            model=model,
            eps=eps,
            num_classes=num_classes,
            test=test,
            train=train,
            stored=stored,
            views=views,
            teacher=teacher,
            settings=settings,
            test_views=test_views,
            teacher_test=teacher_test,
            cache=cache,
        )
        out.seconds[name] = round(time.perf_counter() - start, 2)
        out.metrics[name] = metrics
        out.figures[name] = fig
        if notes:
            out.notes[name] = notes
        log(f"{name} done in {out.seconds[name]:.1f} s")
    if "test" in cache:
        v = cache["test"]
        out.accuracy = {"clean": v.accuracy, "pgd": v.adv_accuracy, "n": len(v.x), "pgd_steps": settings.pgd_steps}
    return out


def _align_uniform(*, stored, views, teacher, test_views, teacher_test, **_):
    v = test_views()
    rows = {
        "classifier": {
            "positive_pairs": "test image vs its PGD example",
            "alignment": align_uniform.alignment(v.features, v.adv_features),
            "uniformity": align_uniform.uniformity(v.features),
            "uniformity_adversarial": align_uniform.uniformity(v.adv_features),
            "n": len(v.x),
        }
    }
    distances = {"classifier: image vs PGD": align_uniform.pair_distances(v.features, v.adv_features).numpy()}
    notes = []
    if stored is not None and "flip" in views:
        clean, flip = (torch.from_numpy(stored[:, views.index(k)].astype(np.float32)) for k in ("clean", "flip"))
        rows["teacher_stored"] = {
            "positive_pairs": "stored clean view vs flip view of the same training image",
            "alignment": align_uniform.alignment(clean, flip),
            "uniformity": align_uniform.uniformity(clean),
            "n": len(clean),
        }
        distances["teacher (stored): clean vs flip"] = align_uniform.pair_distances(clean, flip).numpy()
    elif stored is not None:
        clean = torch.from_numpy(stored[:, views.index("clean")].astype(np.float32))
        rows["teacher_stored"] = {
            "positive_pairs": None,
            "alignment": None,
            "uniformity": align_uniform.uniformity(clean),
            "n": len(clean),
        }
        notes.append(
            f"the store holds only the view(s) {', '.join(views)}: no stored positive pairs (extract with "
            "--views clean,flip for a clean-vs-flip alignment); its uniformity is reported"
        )
    if teacher is not None:
        z, z_adv = teacher_test("clean"), teacher_test("adv")
        rows["teacher_recomputed"] = {
            "positive_pairs": "teacher features of a test image vs of the classifier's PGD example (noise fixed)",
            "alignment": align_uniform.alignment(z, z_adv),
            "uniformity": align_uniform.uniformity(z),
            "n": len(z),
        }
        distances["teacher: image vs classifier's PGD"] = align_uniform.pair_distances(z, z_adv).numpy()
    else:
        notes.append("no teacher network: teacher features of the PGD examples were not computed")
    labels = {
        "classifier": "classifier (test, PGD pairs)",
        "teacher_stored": "teacher, stored (train rows)",
        "teacher_recomputed": "teacher (test, PGD pairs)",
    }
    points = [{"label": labels[k], **r} for k, r in rows.items() if r["alignment"] is not None]
    fig = figures.alignment_uniformity(points, distances, n=len(v.x))
    return rows, fig, notes


def _cls_dim(*, model, test_views, **_):
    v = test_views()
    device = next(model.parameters()).device
    result = classification_dimension(
        v.features, v.y, lambda f: model.head(f.to(device)).cpu(), adv_features=v.adv_features
    )
    marks = {
        "CLS-95": result.cls["95"],
        "CLS-99": result.cls["99"],
        "robust-95": result.robust["95"],
        "robust-99": result.robust["99"],
    }
    fig = figures.cls_dimension(result.ks, result.accuracy, result.adv_accuracy, result.explained, marks, n=len(v.x))
    notes = []
    if result.adv_accuracy[-1] == 0:
        notes.append("PGD accuracy of the full model is 0: the robust dimension is 0 by definition")
    method = "head(mu + U_k U_k^T (f - mu)), PCA fitted on the clean test representations"
    return {**result.to_dict(), "n": len(v.x), "method": method}, fig, notes


def _train_views(model, train: Labelled, settings: Settings, eps: float, cache: dict) -> Views:
    if "train" not in cache:
        cache["train"] = pgd_views(
            model,
            train.x,
            train.y,
            eps=eps,
            steps=settings.pgd_steps,
            seed=settings.seed + 1,
            batch_size=settings.batch_size,
        )
    return cache["train"]


def _cknna(*, model, eps, train, stored, views, settings, cache, **_):
    target = torch.from_numpy(stored[:, views.index("clean") if "clean" in views else 0].astype(np.float32))
    v = _train_views(model, train, settings, eps, cache)
    reps = {"classifier (clean)": v.features, "classifier (PGD)": v.adv_features, "raw pixels": train.x.flatten(1)}
    ks = [k for k in settings.cknna_ks if k < len(target)]
    curves = {label: [cknna(r, target, k=k) for k in ks] for label, r in reps.items()}
    k = min(settings.cknna_k, len(target) - 1)
    metrics = {
        "k": k,
        "n": len(target),
        "cknna": {label: cknna(r, target, k=k) for label, r in reps.items()},
        "mutual_knn": {label: mutual_knn(r, target, k=k) for label, r in reps.items()},
        "curve_ks": ks,
        "curves": curves,
    }
    notes = [
        "teacher side: the stored clean-view features of the same training rows (the DRA targets); classifier "
        "side: its penultimate representation of the un-augmented image and of its PGD example"
    ]
    return metrics, figures.cknna(ks, curves, n=len(target), teacher="teacher"), notes


def _sae(*, model, train, settings, test_views, cache, **_):
    v = test_views()
    train_reps = cache["train"].features if "train" in cache else representations(model, train.x)
    result = sae_sweep(
        train_reps,
        {"test clean": v.features, "test PGD": v.adv_features},
        settings.sae_ks,
        expansion=settings.sae_expansion,
        steps=settings.sae_steps,
        lr=settings.sae_lr,
        seed=settings.seed,
    )
    curves = {**result.nmse, "train clean": result.train_nmse}
    fig = figures.sae(result.ks, curves, result.latents, n_train=len(train_reps))
    return {**result.to_dict(), "n_train": len(train_reps), "n_test": len(v.x), "steps": settings.sae_steps}, fig, []


def _frequency(*, model, test, settings, test_views, **_):
    v = test_views()
    maps = {
        "PGD perturbation x_adv - x": fourier_map(v.x_adv - v.x),
        "input gradient dCE/dx": fourier_map(input_gradients(model, test.x, test.y, batch_size=settings.batch_size)),
    }
    metrics = {
        label: {
            "mean_radius_cycles_per_pixel": m.mean_radius(),
            "high_frequency_share_above_0.25": m.high_frequency_share(),
            "peak_cycles_per_pixel": list(m.peak()),
        }
        for label, m in maps.items()
    }
    return {**metrics, "n": len(v.x)}, figures.frequency(maps, n=len(v.x)), []


def _teacher_probe(*, eps, num_classes, test, train, stored, views, teacher, settings, test_views, **_):
    result = teacher_probe(
        teacher,
        (train.x, train.y, train.rows),
        (test.x, test.y, test.rows),
        num_classes=num_classes,
        eps=eps,
        n_attack=settings.probe_attack_n,
        steps=settings.pgd_steps,
        seed=settings.seed,
    )
    v = test_views()
    m = result.n_attack
    classifier = (
        float((v.logits[:m].argmax(1) == v.y[:m]).double().mean()),
        float((v.adv_logits[:m].argmax(1) == v.y[:m]).double().mean()),
    )
    bars = {"teacher + linear probe": (result.clean_attacked, result.pgd), "classifier": classifier}
    metrics = {**result.to_dict(), "classifier_on_attacked": {"clean": classifier[0], "pgd": classifier[1]}}
    notes = [
        f"the teacher reads each image at its fixed noise level with its row's noise; it is told "
        f"{result.teacher_labels}"
    ]
    if stored is not None and len(stored) >= 4:
        # The same probe on the stored features (the DRA targets): `extract` tells a conditional teacher each
        # image's true label, which it writes into its features (see teachers/layer_probe.py).
        z = torch.from_numpy(stored[:, views.index("clean") if "clean" in views else 0].astype(np.float32))
        half = len(z) // 2
        accuracy = linear_probe(z[:half], train.y[:half], z[half:], train.y[half:])
        metrics["stored_features_probe"] = {"accuracy": accuracy, "n_train": half, "n_test": len(z) - half}
        if teacher.spec.label_dim:
            notes.append(
                f"the stored features come from a class-conditional teacher told each image's true label "
                f"by `extract`; a probe on them scores {100 * accuracy:.1f} % (training rows, half/half), "
                "so accuracy near 100 % means the DRA targets carry the label itself"
            )
    return metrics, figures.teacher_probe(bars, n_attack=m, eps=eps), notes


_RUNNERS = {
    "align-uniform": _align_uniform,
    "cls-dim": _cls_dim,
    "cknna": _cknna,
    "sae": _sae,
    "frequency": _frequency,
    "teacher-probe": _teacher_probe,
}


def settings_dict(settings: Settings) -> dict:
    return asdict(settings)
