"""Training read path of the feature store vs a numpy memmap gather of the same rows, measured side by side.

    python bench/store_read.py [--rows 1000000] [--dim 256] [--batch 512] [--iters 300]

Builds (once, in --dir) a store of rows x 1 view x dim float16 and a flat .npy with the same values, then times
gathers of `batch` random rows: numpy memmap (the yardstick), the store's RAM path, its memory-mapped shard
path, and zarr-python orthogonal indexing (the path the store avoids). Last, it times one TRADES-10 training
step of a small CPU CNN at batch 128 on 28 x 28 x 1 inputs, so the read can be stated as a fraction of a step.
Targets: read path <= 50x memmap, and < 1 % of a training step.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from dra_pipeline.cache import FeatureStore
from dra_pipeline.cache.store import is_store
from dra_pipeline.environment import describe, environment


def build(directory: Path, rows: int, dim: int) -> tuple[Path, Path]:
    store_path, flat_path = directory / f"bench-{rows}x{dim}.zarr", directory / f"bench-{rows}x{dim}.npy"
    if is_store(store_path) and flat_path.exists() and FeatureStore.open(store_path).complete:
        return store_path, flat_path
    if is_store(store_path):  # an incomplete store of an earlier bench run (bench files only)
        shutil.rmtree(store_path)
    flat = np.lib.format.open_memmap(flat_path, mode="w+", dtype=np.float16, shape=(rows, 1, dim))
    source = {"kind": "npz", "path": "bench", "split": "all", "count": rows, "fingerprint": "-", "num_classes": 10}
    store = FeatureStore.create(
        store_path,
        sources=[source],
        labels=np.zeros(rows, np.int64),
        views=["clean"],
        dim=dim,
        meta={"teacher": "bench"},
    )
    for k in range(store.layout.num_shards):
        a, b = store.layout.shard_rows(k)
        feats = np.random.default_rng(k).standard_normal((b - a, 1, dim)).astype(np.float16)
        flat[a:b] = feats
        store.write_shard(k, feats)
    flat.flush()
    return store_path, flat_path


def time_per_batch(gather, batches: list[np.ndarray]) -> float:
    gather(batches[0])  # warm
    start = time.perf_counter()
    for rows in batches:
        gather(rows)
    return (time.perf_counter() - start) / len(batches)


def trades_step_seconds(batch: int = 128, steps: int = 10) -> float:
    """One TRADES step (10 attack steps + outer loss) of a small CNN, as a CPU training-step yardstick."""
    import torch
    import torch.nn.functional as F

    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1),
        torch.nn.BatchNorm2d(32),
        torch.nn.SiLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.BatchNorm2d(64),
        torch.nn.SiLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64 * 7 * 7, 256),
        torch.nn.SiLU(),
        torch.nn.Linear(256, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def step():
        with torch.no_grad():
            p_clean = F.softmax(model(x), 1)
        x_adv = (x + 0.001 * torch.randn_like(x)).clamp(0, 1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(x_adv), 1), p_clean, reduction="batchmean")
            (g,) = torch.autograd.grad(kl, x_adv)
            x_adv = torch.min(torch.max(x_adv.detach() + 0.025 * g.sign(), x - 0.1), x + 0.1).clamp(0, 1)
        logits = model(x)
        loss = F.cross_entropy(logits, y) + 6 * F.kl_div(
            F.log_softmax(model(x_adv), 1), F.softmax(logits, 1), reduction="batchmean"
        )
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(3):
        step()
    return (time.perf_counter() - start) / 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "dra-bench")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)

    print(f"machine: {describe(environment())}")
    t0 = time.perf_counter()
    store_path, flat_path = build(args.dir, args.rows, args.dim)
    print(f"store: {args.rows} rows x 1 x {args.dim} float16 ({time.perf_counter() - t0:.1f} s to build or find)")
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, args.rows, args.batch) for _ in range(args.iters)]

    flat = np.load(flat_path, mmap_mode="r")
    np.asarray(flat[:]).sum()  # page the whole file in: warm-cache comparison
    t_memmap = time_per_batch(lambda r: flat[r], batches)

    t0 = time.perf_counter()
    ram = FeatureStore.open(store_path)
    ram.read(batches[0])
    load_s = time.perf_counter() - t0
    t_ram = time_per_batch(ram.read, batches)
    mapped = FeatureStore.open(store_path, ram_budget_bytes=0)
    for k in range(mapped.layout.num_shards):  # verify (hash) each shard once, outside the timing
        mapped.shard(k)
    t_mapped = time_per_batch(mapped.read, batches)

    import zarr

    z = zarr.open_array(store_path / "features", mode="r")
    t_zarr = time_per_batch(lambda r: z.get_orthogonal_selection((np.sort(r), slice(None), slice(None))), batches[:20])

    print(f"\n{'read path':<34} {'ms/batch':>9} {'x memmap':>9}")
    for name, t in [
        ("numpy memmap gather (yardstick)", t_memmap),
        ("store, in RAM (training default)", t_ram),
        ("store, memory-mapped shards", t_mapped),
        ("zarr-python orthogonal indexing", t_zarr),
    ]:
        print(f"{name:<34} {t * 1e3:>9.3f} {t / t_memmap:>9.1f}")
    print(f"(RAM path: {load_s:.2f} s once to load and hash-check {ram.nbytes / 2**20:.0f} MiB)")

    step = trades_step_seconds()
    worst = max(t_ram, t_mapped) * 128 / args.batch  # rows for one 128-image step
    print(f"\nTRADES-10 step, small CNN, batch 128, 28x28x1: {step * 1e3:.0f} ms")
    print(f"store read for 128 rows (slower path, scaled): {worst * 1e3:.3f} ms = {100 * worst / step:.4f} % of a step")
    ok = max(t_ram, t_mapped) / t_memmap <= 50 and worst / step < 0.01
    print(f"targets (<= 50x memmap, < 1 % of a step): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
