"""Model FLOPs utilisation (MFU) of a training step: FLOPs per image x images/s over the device's dense peak.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode`, which counts the matrix products and convolutions
(forward and backward, `torch.autograd.grad` inside an attack included) of whatever runs under it; elementwise
work (activations, batch norm, the optimizer) is not counted, as in the usual MFU definition (PaLM, appendix B).
The peak is the device's dense tensor-core rate for the step's precision: bf16 for bf16 autocast, TF32 for an fp32
step on CUDA with TF32 allowed (what `train` runs), plain FP32 otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Peak:
    """Dense (no structured sparsity) peak rates of one GPU model, TFLOP/s."""

    name: str
    bf16: float  # BF16 tensor core
    tf32: float  # TF32 tensor core
    fp32: float  # FP32 without tensor cores
    source: str  # the datasheet the numbers come from


# NVIDIA's datasheets print tensor-core rates "with sparsity"; the dense rates below are half of those.
# H100 / H200: "NVIDIA H100 Tensor Core GPU" datasheet (SXM: BF16 1,979*, TF32 989*, FP32 67; PCIe: 1,513*, 756*, 51;
# NVL: 1,671*, 835*, 60) and "NVIDIA H200 Tensor Core GPU" datasheet (SXM: 1,979*, 989*, 67; NVL: 1,671*, 835*, 60).
# A100: "NVIDIA A100 Tensor Core GPU" datasheet (40 and 80 GB, SXM and PCIe: BF16 312 | 624*, TF32 156 | 312*, 19.5).
# L40S: "NVIDIA L40S" datasheet (BF16 362.05 | 733*, TF32 183 | 366*, FP32 91.6); L40: (181.05 | 362.1*,
# 90.5 | 181*, 90.5); L4: "NVIDIA L4 Tensor Core GPU" datasheet (242*, 120*, 30.3); A10: "NVIDIA A10 Tensor Core
# GPU" datasheet (125 | 250*, 62.5 | 125*, 31.2).
# Patterns are tried in order against torch.cuda.get_device_name() (e.g. "NVIDIA H200", "NVIDIA H100 80GB HBM3",
# "NVIDIA H100 PCIe", "NVIDIA A100-SXM4-80GB", "NVIDIA L40S"); the more specific ones come first.
PEAKS: tuple[tuple[str, Peak], ...] = (
    (r"H200 NVL", Peak("H200 NVL", 835.5, 417.5, 60.0, "NVIDIA H200 datasheet")),
    (r"H200", Peak("H200 SXM", 989.5, 494.5, 67.0, "NVIDIA H200 datasheet")),
    (r"H100 NVL", Peak("H100 NVL", 835.5, 417.5, 60.0, "NVIDIA H100 datasheet")),
    (r"H100 PCIe", Peak("H100 PCIe", 756.5, 378.0, 51.0, "NVIDIA H100 datasheet")),
    (r"H100", Peak("H100 SXM", 989.5, 494.5, 67.0, "NVIDIA H100 datasheet")),
    (r"A100", Peak("A100", 312.0, 156.0, 19.5, "NVIDIA A100 datasheet")),
    (r"L40S", Peak("L40S", 362.05, 183.0, 91.6, "NVIDIA L40S datasheet")),
    (r"L40\b", Peak("L40", 181.05, 90.5, 90.5, "NVIDIA L40 datasheet")),
    (r"\bL4\b", Peak("L4", 121.0, 60.0, 30.3, "NVIDIA L4 datasheet")),
    (r"\bA10\b", Peak("A10", 125.0, 62.5, 31.2, "NVIDIA A10 datasheet")),
)
PRECISIONS = ("bf16", "tf32", "fp32")


def device_peak(device_name: str) -> Peak | None:
    """The peak table's entry for a GPU name as torch reports it, or None when the name is not in the table."""
    for pattern, peak in PEAKS:
        if re.search(pattern, device_name):
            return peak
    return None


def peak_tflops(peak: Peak, precision: str) -> float:
    """Dense peak TFLOP/s of `peak` for a precision: bf16, tf32 or fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    return getattr(peak, precision)


def step_precision(train_precision: str, device_type: str, tf32_allowed: bool) -> str:
    """The rate a step's matrix products run at: bf16 under bf16 autocast; an fp32 step is TF32 on CUDA when TF32 is
    allowed (`train` allows it, as DM-AT's PyTorch 1.8 did by default), FP32 otherwise."""
    if train_precision == "bf16":
        return "bf16"
    return "tf32" if device_type == "cuda" and tf32_allowed else "fp32"


class _GlobalOnly:
    """Stands in for FlopCounterMode's ModuleTracker: every FLOP is counted under "Global" only. The tracker's
    backward hooks break `torch.autograd.grad` with respect to a leaf input, which every PGD step calls ("A leaf
    node was passed to _will_engine_execute_node ..."), and per-module totals are not needed here."""

    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matrix products and convolutions that fn() runs (forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()  # pyright: ignore[reportAttributeAccessIssue]
    with counter:
        fn()
    return int(counter.get_total_flops())


def mfu(flops_per_image: float, images_per_s: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the dense peak (a fraction)."""
    return flops_per_image * images_per_s / (peak_tflops * 1e12)


@dataclass(frozen=True)
class PeakChoice:
    tflops: float | None  # None: no peak known
    label: str  # what the number is, for the printed line


def choose_peak(device_name: str | None, precision: str, override: float | None = None) -> PeakChoice:
    """The peak an MFU is computed against: --peak-tflops when given, else the table's entry for the GPU."""
    if override is not None:
        return PeakChoice(override, f"{override:g} TFLOP/s (--peak-tflops), {precision}")
    peak = device_peak(device_name) if device_name else None
    if peak is None:
        return PeakChoice(None, "n/a (no peak known; pass --peak-tflops)")
    rate = peak_tflops(peak, precision)
    return PeakChoice(rate, f"{peak.name} dense {precision} {rate:g} TFLOP/s ({peak.source})")
