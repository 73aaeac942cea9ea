"""The record of where a result was computed: package versions, git commit, machine (CPU model, cores, RAM, GPU)
and the device used. Runs (environment.json), evaluation reports, analyses and benchmarks all write this one."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("dra-pipeline", "torch", "numpy", "zarr", "pyautoattack", "timm", "diffusers")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def git_sha() -> str:
    """The commit of the checkout this package runs from, or "" outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def environment(device: str | None = None) -> dict:
    """Versions, commit, machine and (when given) the torch device a result was computed on, as JSON-able data."""
    import torch

    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        ram_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        ram_gib = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    cpu = f"{cpu_model()}, {os.cpu_count()} cores"
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "versions": versions,
        "git_sha": git_sha(),
        "platform": platform.platform(),
        "cpu": cpu,
        "ram_gib": ram_gib,
        "gpu": gpu,
        "torch_threads": torch.get_num_threads(),
    }
    if device is not None:
        kind = torch.device(device)
        env["device"] = str(kind)
        env["device_name"] = torch.cuda.get_device_name(kind) if kind.type == "cuda" else cpu
    return env


def describe(env: dict) -> str:
    """One line naming the machine and versions, e.g. for the first line of a benchmark's output."""
    v = env["versions"]
    return f"{env['cpu']}, {env['ram_gib']} GiB RAM, {env['gpu'] or 'no GPU'}, python {v['python']}, torch {v['torch']}"
