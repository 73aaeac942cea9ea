"""`analyze`'s wiring: a run directory in, analysis.json, one PNG per analysis and analysis.md out.

Reads the run's classifier, seeded subsets of its dataset's test and training images, the stored teacher features of
those training rows, and the teacher rebuilt from the store's provenance. The store defaults to the one the run
trained with (`features` in the run's config.yaml). Its first source must be the training set the classifier was
trained on (same dataset, image shape, classes and fingerprint); training rows are rows of that source, so row r's
stored feature and image belong together. Test image i is given the teacher noise of row len(train) + i, as
`teacher probe` does: no test image shares a noise draw with a real training image (in a store with synthetic rows,
those rows' draws come next, so a test image can share one with a synthetic image).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from dra_pipeline import checkpoints
from dra_pipeline.analysis import ANALYSES
from dra_pipeline.analysis.context import Context, Labelled, Settings
from dra_pipeline.analysis.report import write_report
from dra_pipeline.atomic import check_writable
from dra_pipeline.cache import FeatureStore
from dra_pipeline.cache.store import SOURCE_IDENTITY
from dra_pipeline.checkpoints import LoadedClassifier, load_classifier
from dra_pipeline.data import NAMED, SourceSpec, dataset_name, open_source
from dra_pipeline.data.batches import center_crop, validation_rows
from dra_pipeline.devices import resolve_device
from dra_pipeline.environment import environment
from dra_pipeline.errors import DraError
from dra_pipeline.run_dir import recorded_config
from dra_pipeline.seeding import subset_rows
from dra_pipeline.stages.analyze import analyze, selected
from dra_pipeline.teachers import Teacher, teacher_from_provenance


@dataclass
class AnalysisInputs:
    classifier: LoadedClassifier
    test: Labelled
    train: Labelled
    store_path: Path | None
    store: FeatureStore | None
    stored: np.ndarray | None  # (len(train), views, dim) float32
    teacher: Teacher | None
    notes: list[str] = field(default_factory=list)


def run_analyze(
    run: Path | None,
    *,
    features: Path | None,
    settings: Settings,
    n: int,
    out: Path | None,
    device: str = "auto",
    data_dir=None,
) -> tuple[Path, int, float]:
    """Analyse `run` (default: the newest); returns (analysis.md path, figures written, wall seconds)."""
    start = time.perf_counter()
    run = Path(run) if run else checkpoints.newest_run("runs")
    check_writable(Path(out) if out else run / "analysis", "analysis folder")
    what = selected(settings.what)
    dev = str(resolve_device(device))
    inputs = load_inputs(run, features=features, n=n, seed=settings.seed, what=what, data_dir=data_dir, device=dev)
    info = inputs.classifier.info
    views = tuple(inputs.store.layout.views) if inputs.store is not None else ("clean",)
    ctx = Context(
        model=inputs.classifier.model,
        eps=info["eps"],
        num_classes=info["num_classes"],
        test=inputs.test,
        train=inputs.train,
        stored=inputs.stored,
        views=views,
        teacher=inputs.teacher,
        settings=Settings(**{**asdict(settings), "what": what}),
    )
    result = analyze(ctx)
    prov = inputs.store.provenance if inputs.store is not None else {}
    teacher = (
        (
            f"{prov.get('teacher')} (layer {prov.get('layer')}, {prov.get('noise_kind', 'sigma')} "
            f"{prov.get('noise')}, seed {prov.get('seed')})"
        )
        if prov
        else None
    )
    header = {
        "run": str(run),
        "checkpoint": str(inputs.classifier.checkpoint),
        "epoch": inputs.classifier.epoch,
        "model": info["name"],
        "dataset": info["dataset"],
        "eps": info["eps"],
        "store": str(inputs.store_path) if inputs.store_path else None,
        "store_views": list(views),
        "teacher": teacher,
        "n_test": len(inputs.test.x),
        "n_train": len(inputs.train.x),
        "settings": asdict(ctx.settings),
        "environment": environment(dev),
        "command": command(run, features, ctx.settings, n),
        "notes": inputs.notes,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    out = Path(out) if out else run / "analysis"
    write_report(result, out, header)
    return out / "analysis.md", len(result.figures), header["wall_s"]


def command(run: Path, features: Path | None, s: Settings, n: int) -> str:
    """The command that reproduces this analysis, with every setting spelled out."""
    store = f" --features {features}" if features else ""
    return (
        f"dra-pipeline analyze --run {run}{store} --what {','.join(s.what)} --n {n} --seed {s.seed} "
        f"--pgd-steps {s.pgd_steps} --probe-n {s.probe_attack_n} --sae-steps {s.sae_steps}"
    )


def run_store(run: Path) -> Path | None:
    """The feature store a run trained with (`features` in its config.yaml), or None."""
    value = recorded_config(run).get("features")
    return Path(value) if value else None


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


def load_inputs(
    run: str | Path,
    *,
    features: str | Path | None,
    n: int,
    seed: int,
    what: tuple[str, ...],
    data_dir=None,
    device: str = "cpu",
) -> AnalysisInputs:
    """Everything `analyze` needs for the run directory `run`; user errors raise DraError with one line."""
    run = Path(run)
    if not run.is_dir():
        raise DraError(f"run {run} not found")
    if not (run / checkpoints.BEST_EMA).is_file():
        raise DraError(f"{run} has no {checkpoints.BEST_EMA}; is it a training run directory?")
    if n < 2:
        raise DraError(f"--n must be at least 2, got {n}")
    classifier = load_classifier(run / checkpoints.BEST_EMA, device)
    info = classifier.info
    dataset = info["dataset"]
    notes = []
    store_path = Path(features) if features else run_store(run)
    store = stored = teacher = None
    config = recorded_config(run)
    if store_path is None:
        notes.append("no feature store: the run trained without one and none was given (--features)")
        text = f"{dataset}:train" if dataset in NAMED else config.get("data", {}).get("dataset", dataset)
        train_source = open_source(text, data_dir=data_dir)
        limit = len(train_source)
    else:
        store = FeatureStore.open(store_path)
        _check_store_matches(store, store_path, info)
        missing = store.missing_shards()
        if missing:
            raise DraError(f"{store_path}: {len(missing)} shards are not extracted yet; finish `extract` first")
        train_source = open_source(SourceSpec.from_dict(store.sources[0]), data_dir=data_dir)
        _check_source(store, store_path, train_source.describe())
        limit = min(len(train_source), store.layout.rows)
    if dataset in NAMED:
        test_source = open_source(f"{dataset}:test", data_dir=data_dir)
        train_rows = subset_rows(0, limit, min(n, limit), seed)
        test_index = subset_rows(0, len(test_source), min(n, len(test_source)), seed)
        test_noise_rows = len(train_source) + test_index
    else:  # a folder or file has no test split: the rows the run held out for validation, never trained on
        held = held_out_rows(run, train_source, limit)
        rest = np.setdiff1d(np.arange(limit), held)
        train_rows = rest[subset_rows(0, len(rest), min(n, len(rest)), seed)]
        test_source, test_index = train_source, held[subset_rows(0, len(held), min(n, len(held)), seed)]
        test_noise_rows = test_index  # rows of the training source: their own noise, as at extraction
        notes.append(f"test images: {len(test_index)} of the run's {len(held)} held-out validation rows of {dataset}")
    crop = config.get("data", {}).get("crop_size", 0) or 0  # the classifier sees the centre, as validated
    train = Labelled(
        to_tensor(center_crop(train_source.read(train_rows), crop)),
        torch.from_numpy(train_source.labels[train_rows]),
        train_rows,
    )
    test = Labelled(
        to_tensor(center_crop(test_source.read(test_index), crop)),
        torch.from_numpy(test_source.labels[test_index]),
        test_noise_rows,
    )
    if store is not None:
        stored = store.read(train_rows).astype(np.float32)
        wants_teacher = any(ANALYSES[w].needs_teacher or w == "align-uniform" for w in what)
        if wants_teacher:
            try:
                teacher = teacher_from_provenance(store.provenance, device=device, where=str(store_path))
            except DraError as e:
                if any(ANALYSES[w].needs_teacher for w in what):
                    raise DraError(f"{e} (needed for teacher-probe; leave it out of --what to skip it)") from None
                notes.append(f"teacher not rebuilt ({e}); teacher features of PGD examples are not computed")
    return AnalysisInputs(classifier, test, train, store_path, store, stored, teacher, notes)


def held_out_rows(run: Path, source, covered: int) -> np.ndarray:
    """The rows of `source` (its first `covered`) that the run held out for validation, by its config.yaml."""
    try:
        data = recorded_config(run)["data"]
        n_val, how = int(data["validation"]), str(data.get("validation_rows", "first"))
    except (KeyError, TypeError, ValueError):
        raise DraError(f"{run}/config.yaml does not say which rows the run held out (data.validation)") from None
    return validation_rows(source.labels[:covered], n_val, how, class_sorted=source.spec.kind not in NAMED)


def _check_store_matches(store: FeatureStore, path: Path, info: dict) -> None:
    """The store's first source must be images of the dataset the classifier was trained on: the same content
    (fingerprint) when the run records it, else the same dataset name."""
    src = store.sources[0] if store.sources else {}
    name = dataset_name(src) if src else None
    shape = list(src.get("image_shape", []))
    want_shape = [*info.get("image_size", shape[:2]), info.get("in_channels", shape[2] if len(shape) == 3 else 0)]
    # the store holds whole images; a run that trained on centre crops (data.crop_size) records the crop's size
    cropped = len(shape) == 3 and shape[2] == want_shape[-1] and all(s >= w for s, w in zip(shape[:2], want_shape))
    if "dataset_fingerprint" in info:
        same = src.get("fingerprint") == info["dataset_fingerprint"]
    else:  # runs from before fingerprints were recorded; their folders were labelled imagenet
        same = name == info["dataset"] or (src.get("kind") == "folder" and info["dataset"] == "imagenet")
    if not same or (shape and not cropped) or src.get("num_classes") != info["num_classes"]:
        raise DraError(
            f"{path} holds features of {name} images {tuple(shape)}, {src.get('num_classes')} classes, but the "
            f"run's classifier was trained on {info['dataset']} {tuple(want_shape)}, {info['num_classes']} classes; "
            f"pass --features with a store of the run's own data"
        )


def _check_source(store: FeatureStore, path: Path, have: dict) -> None:
    want = store.sources[0]
    for key in SOURCE_IDENTITY:
        if key == "offset":
            continue
        if key in want and key in have and want[key] != have[key]:
            raise DraError(
                f"{path}: sources[0].{key} is {want[key]!r} in the store but {have[key]!r} in the data "
                "found now; the data changed since extraction"
            )
