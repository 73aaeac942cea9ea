"""Stage two: TRADES (or PGD-AT) adversarial training with the DRA alignment loss, targets read by row.

The recipe follows DM-AT item by item (docs/recipe.md): attack in train mode with BN statistics frozen, label
smoothing, SGD Nesterov without weight decay on BN, PyTorch's OneCycleLR stepped per epoch, BN statistics started
at the first batch's, an EMA that copies the model through its warm-up and whose BN statistics are the model's, the
best EMA checkpoint by CW PGD-40 on a held-out validation split (ties to the later epoch).
Checkpoints are written at epoch ends; every batch and every attack start is a function of (seed, epoch,
batch) or (seed, rank, step), so a run resumed from its last checkpoint replays the same computation.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dra_pipeline import checkpoints
from dra_pipeline.config import Config
from dra_pipeline.data.batches import BatchLoader
from dra_pipeline.distributed import SINGLE, Dist, all_reduce_sum, average_gradients, broadcast
from dra_pipeline.errors import DraError
from dra_pipeline.losses import ProjectionHead, alignment_loss, pgd_at, trades, uniform_start
from dra_pipeline.models import Classifier
from dra_pipeline.pgd import batch_norm_momentum, cw_loss, pgd_linf
from dra_pipeline.run_dir import RunDir
from dra_pipeline.seeding import keyed_generator

log = logging.getLogger(__name__)

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


@dataclass
class TrainState:
    model: Classifier
    ema: Classifier
    head: ProjectionHead | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    model_info: dict  # how to rebuild the classifier: name, dataset, num_classes, in_channels (see checkpoints.py)
    epoch: int = 0  # epochs completed
    best_robust: float = -1.0

    def state_dict(self) -> dict:
        return checkpoints.training_checkpoint(
            model=self.model.state_dict(),
            ema=self.ema.state_dict(),
            head=self.head.state_dict() if self.head is not None else None,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            epoch=self.epoch,
            best_robust=self.best_robust,
            model_info=self.model_info,
        )

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        if self.head is not None:
            self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.best_robust = int(state["epoch"]), float(state["best_robust"])


def build_state(
    cfg: Config, model: Classifier, target_dim: int | None, steps_per_epoch: int, *, model_info: dict
) -> TrainState:
    """Model, EMA copy, DRA head (when target_dim), optimizer (SGD Nesterov or Lion) with normalisation-layer
    parameters exempt from weight decay and the head at its own weight decay, learning-rate schedule."""
    head = ProjectionHead(model.feature_dim, target_dim, cfg.dra.hidden) if target_dim else None
    decay, no_decay = [], []
    for m in model.modules():
        for p in m.parameters(recurse=False):
            (no_decay if isinstance(m, NORM_LAYERS) else decay).append(p)
    t = cfg.train
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if head is not None:
        groups.append({"params": list(head.parameters()), "weight_decay": cfg.dra.weight_decay})
    if t.optimizer == "lion":
        from timm.optim import Lion

        optimizer = Lion(groups, lr=t.lr, betas=(0.9, 0.99))
    else:
        optimizer = torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=True)
    scheduler = build_schedule(t, optimizer, steps_per_epoch)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    return TrainState(model, ema, head, optimizer, scheduler, model_info)


def build_schedule(t, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule over the whole run, in units of epochs or steps (t.schedule_unit).

    onecycle is PyTorch's OneCycleLR as DM-AT builds it (max_lr, pct_start = warmup, total_steps; the defaults for
    the rest: cosine annealing, lr / 25 at the start, lr / 25 / 1e4 at the end, momentum cycled 0.95 -> 0.85 ->
    0.95 unless cycle_momentum is off). warmup-cosine: linear warm-up from 0 to lr, then cosine to 0.
    """
    total = t.epochs if t.schedule_unit == "epoch" else t.epochs * steps_per_epoch
    if t.schedule == "onecycle":
        # OneCycleLR divides by its warm-up length pct_start * total - 1: a warm-up of exactly one step divides by 0
        pct_start = t.warmup * (1 + 1e-9) if t.warmup * total == 1 else t.warmup
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=t.lr, total_steps=total, pct_start=pct_start, cycle_momentum=t.cycle_momentum
        )
    warmup = max(1, round(t.warmup * total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def ema_decay(step: int, *, cap: float, warmup_steps: float) -> float:
    """DM-AT's EMA decay at global step `step` (1 for the first update): 0 before warmup_steps, so the EMA copies the
    model, then min(cap, (1 + d) / (10 + d)) with d = step - warmup_steps."""
    if step < warmup_steps:
        return 0.0
    d = step - warmup_steps
    return min(cap, (1 + d) / (10 + d))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (BN statistics) are the model's."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def all_finite(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def bf16_autocast(cfg: Config) -> bool:
    return cfg.train.precision == "bf16"


def channels_last(cfg: Config, device: torch.device) -> bool:
    return cfg.train.channels_last == "on" or (cfg.train.channels_last == "auto" and device.type == "cuda")


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step: float,
    steps: int,
    loss: str = "cw",
    batch_size: int = 256,
    dist: Dist = SINGLE,
) -> tuple[float, float]:
    """(clean, PGD) accuracy of `model` in eval mode on (x, y): PGD with the CW margin loss (DM-AT's checkpoint
    selection) or cross-entropy, and a uniform random start seeded per block.

    Blocks of `batch_size` images are dealt to ranks round-robin and the counts summed, so the result does not
    depend on the number of processes.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    counts = torch.zeros(2, dtype=torch.float64)
    for a in range(dist.rank * batch_size, len(x), dist.world * batch_size):
        xb, yb = x[a : a + batch_size].to(device), y[a : a + batch_size].to(device)
        with torch.no_grad():
            counts[0] += (model(xb).argmax(1) == yb).sum().item()
        start = uniform_start(eps, torch.Generator(device=device).manual_seed(a))
        objective = (lambda o, yb=yb: cw_loss(o, yb)) if loss == "cw" else (lambda o, yb=yb: F.cross_entropy(o, yb))
        x_adv = pgd_linf(model, xb, objective, eps=eps, step=step, steps=steps, random_start=start)
        with torch.no_grad():
            counts[1] += (model(x_adv).argmax(1) == yb).sum().item()
    model.train(was_training)
    clean, robust = (all_reduce_sum(dist, counts.to(device)).cpu() / len(x)).tolist()
    return clean, robust


def training_step(
    cfg: Config,
    state: TrainState,
    model: nn.Module,
    batch,
    *,
    step: int,
    steps_per_epoch: int,
    dist: Dist = SINGLE,
    online_targets=None,
) -> dict[str, float]:
    """One optimisation step on this rank's slice of the global batch: attack, TRADES/PGD-AT loss
    (+ lambda * DRA alignment), gradients averaged over ranks, update, EMA.

    `model` is state.model or its compiled form. Returns the step's loss, alignment loss and clean/adversarial
    training accuracy, averaged over ranks. A non-finite loss (on any rank) is returned without updating anything.
    """
    t, a, device = cfg.train, cfg.attack, dist.device
    x, y = batch.images.to(device, non_blocking=True), batch.labels.to(device, non_blocking=True)
    if channels_last(cfg, device):
        x = x.contiguous(memory_format=torch.channels_last)
    kw = dict(
        eps=a.eps,
        step=a.step,
        steps=a.steps,
        label_smoothing=t.label_smoothing,
        generator=keyed_generator(t.seed, 0, step, device=device),
        part=(dist.rank, dist.world),
    )
    # DM-AT starts batch-norm running statistics at the first step's batch statistics (momentum 1, then 0.01)
    first = t.first_batch_bn_stats and step == 0
    with (
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_autocast(cfg)),
        batch_norm_momentum(state.model, 1.0) if first else contextlib.nullcontext(),
    ):
        out = trades(model, x, y, beta=t.beta, **kw) if t.loss == "trades" else pgd_at(model, x, y, **kw)
        loss, align = out.loss.float(), torch.zeros((), device=device)
        if state.head is not None and cfg.dra.weight > 0:
            targets = online_targets(batch.rows, batch.flipped) if online_targets else batch.targets
            align = alignment_loss(state.head(out.features_adv).float(), targets.to(device, non_blocking=True))
            loss = loss + cfg.dra.weight * align
    metrics = torch.stack(
        [
            loss.detach(),
            align.detach(),
            (out.logits_clean.argmax(1) == y).float().mean(),
            (out.logits_adv.argmax(1) == y).float().mean(),
        ]
    )
    loss_value, align_value, clean_acc, adv_acc = (all_reduce_sum(dist, metrics) / dist.world).tolist()
    if math.isfinite(loss_value):
        params = [*state.model.parameters(), *(state.head.parameters() if state.head is not None else [])]
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(dist, params)
        state.optimizer.step()
        if t.schedule_unit == "step":
            state.scheduler.step()
        broadcast(dist, state.model.buffers())  # rank 0's BN running statistics, as DataParallel keeps them
        warmup_steps = t.ema_warmup * t.epochs * steps_per_epoch
        update_ema(state.ema, state.model, ema_decay(step + 1, cap=t.ema_decay, warmup_steps=warmup_steps))
    return {"loss": loss_value, "align": align_value, "clean_acc": clean_acc, "adv_acc": adv_acc}


def train(
    cfg: Config,
    state: TrainState,
    loader: BatchLoader,
    run: RunDir,
    *,
    val: tuple[torch.Tensor, torch.Tensor],
    dist: Dist = SINGLE,
    model: nn.Module | None = None,
    online_targets: Callable[[np.ndarray, np.ndarray], torch.Tensor] | None = None,
    progress: Callable[[int], None] | None = None,
) -> TrainState:
    """Train from state.epoch to cfg.train.epochs; checkpoint, validate and log at every epoch end (rank 0 writes).

    `model` is what the step calls (state.model, or its torch.compile form).
    """
    t, a = cfg.train, cfg.attack
    model = model if model is not None else state.model
    steps_per_epoch = loader.plan.steps_per_epoch
    for epoch in range(state.epoch, t.epochs):
        model.train()
        start, sums, n = time.perf_counter(), {"loss": 0.0, "align": 0.0, "clean_acc": 0.0, "adv_acc": 0.0}, 0
        wait_start = loader.wait_seconds
        lr = state.optimizer.param_groups[0]["lr"]  # this epoch's (per-step schedules: its first step's)
        for index, batch in enumerate(loader.epoch(epoch)):
            step = epoch * steps_per_epoch + index
            metrics = training_step(
                cfg,
                state,
                model,
                batch,
                step=step,
                steps_per_epoch=steps_per_epoch,
                dist=dist,
                online_targets=online_targets,
            )
            if not math.isfinite(metrics["loss"]):
                raise DraError(
                    f"loss is {metrics['loss']} at epoch {epoch + 1}, batch {index + 1}; stopped. The last "
                    f"good checkpoint (epoch {state.epoch}) is kept in {run.path / 'last.pt'}"
                )
            for k in sums:
                sums[k] += metrics[k]
            n += 1
            if progress:
                progress(1)
        if t.schedule_unit == "epoch":
            state.scheduler.step()
        bad = [name for name, m in (("model", state.model), ("EMA", state.ema)) if not all_finite(m)]
        if bad:  # e.g. the epoch's last update made the weights NaN: its loss was still finite
            raise DraError(
                f"the {' and '.join(bad)} weights are not finite after epoch {epoch + 1}; stopped. The last good "
                f"checkpoint (epoch {state.epoch}) is kept in {run.path / checkpoints.LAST}"
            )
        state.epoch = epoch + 1
        val_clean, val_robust = robust_accuracy(
            state.ema, *val, eps=a.eps, step=a.step, steps=a.val_steps, loss=a.val_loss, dist=dist
        )
        record = {
            "epoch": state.epoch,
            **{k: v / max(n, 1) for k, v in sums.items()},
            "val_clean": val_clean,
            "val_robust": val_robust,
            "val_n": len(val[0]),
            "lr": lr,
            "momentum": state.optimizer.param_groups[0].get("momentum"),
            "epoch_s": time.perf_counter() - start,
            "feature_wait_s": loader.wait_seconds - wait_start,
        }
        best = val_robust >= state.best_robust  # ties go to the later epoch, as DM-AT's selection
        if best:
            state.best_robust = val_robust
        if dist.rank == 0:
            if best:
                best_ema = checkpoints.best_ema_checkpoint(
                    ema=state.ema.state_dict(),
                    model_info=state.model_info,
                    epoch=state.epoch,
                    val_robust=val_robust,
                    val_clean=val_clean,
                )
                run.save(checkpoints.BEST_EMA, best_ema)
            run.save(checkpoints.LAST, {**state.state_dict(), "stats": record})
            run.log(record)
            mark = "  *best" if best else ""
            log.info(
                f"epoch {state.epoch}/{t.epochs}  loss {record['loss']:.4f}  align {record['align']:.4f}  "
                f"train adv acc {record['adv_acc']:.3f}  val clean {val_clean:.3f}  val PGD-{a.val_steps} "
                f"{val_robust:.3f} (n={len(val[0])}){mark}  {record['epoch_s']:.0f} s"
            )
    return state
