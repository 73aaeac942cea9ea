"""Run directories: config, environment, logs and checkpoints in one place, written atomically, never deleted.

runs/NAME/config.yaml       the resolved config, written before the first step
runs/NAME/environment.json  versions, commit and machine (environment.py)
runs/NAME/stats.jsonl       one line per epoch
runs/NAME/metrics.csv       the same, as CSV;  runs/NAME/curves.png: losses, accuracies, learning rate by epoch
runs/NAME/tensorboard/      TensorBoard scalars, when the tensorboard package is installed
runs/NAME/last.pt           everything needed to resume at an epoch end (checkpoints.py owns the format)
runs/NAME/best-ema.pt       EMA weights with the best validation robust accuracy so far
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from dra_pipeline import checkpoints
from dra_pipeline.atomic import atomic_write_text
from dra_pipeline.config import flatten
from dra_pipeline.curves import tensorboard_writer, write_curves_png, write_metrics_csv
from dra_pipeline.environment import environment
from dra_pipeline.errors import DraError


def recorded_config(run: Path) -> dict:
    """The config.yaml a run directory records, as a dict ({} when there is none or it cannot be read)."""
    try:
        config = yaml.safe_load((Path(run) / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._tensorboard = None  # a SummaryWriter, False when tensorboard is not installed

    def start(self, config: dict, *, device: str | None = None) -> bool:
        """Create the run or check that the existing one was made with the same config; True if resuming."""
        cfg_path = self.path / "config.yaml"
        if cfg_path.exists():
            recorded = yaml.safe_load(cfg_path.read_text())
            if recorded != json.loads(json.dumps(config)):
                have, want = flatten(recorded or {}), flatten(config)
                diff = sorted(k for k in want.keys() | have.keys() if have.get(k) != want.get(k))
                raise DraError(
                    f"{self.path} holds a run with a different config ({', '.join(diff[:5])}); "
                    "rerun with the same settings to resume, or choose another --out"
                )
            self._remove_stale_temp_files()
            return (self.path / checkpoints.LAST).exists()
        if self.path.exists() and any(self.path.iterdir()):
            raise DraError(f"{self.path} exists and is not a run directory (no config.yaml); choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_text("config.yaml", yaml.safe_dump(config, sort_keys=False))
        self.write_text("environment.json", json.dumps(environment(device), indent=2))
        return False

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.path / name, text)

    def save(self, name: str, state: dict) -> None:
        checkpoints.save(self.path / name, state)

    def load(self, name: str, device: str | torch.device = "cpu") -> dict:
        return checkpoints.load(self.path / name, device)

    def log(self, record: dict) -> None:
        """Append the epoch's record to stats.jsonl, then redraw metrics.csv and curves.png from all records."""
        path = self.path / "stats.jsonl"
        torn = path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
        with open(path, "a") as f:  # a line a kill cut short is left behind on its own line, and skipped on reading
            f.write(("\n" if torn else "") + json.dumps(record) + "\n")
        records = self.records()
        write_metrics_csv(records, self.path / "metrics.csv")
        write_curves_png(records, self.path / "curves.png", title=str(self.path))
        if self._tensorboard is None:
            self._tensorboard = tensorboard_writer(self.path / "tensorboard") or False
        if self._tensorboard:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, int | float):
                    self._tensorboard.add_scalar(key, value, record["epoch"])
            self._tensorboard.flush()

    def records(self) -> list[dict]:
        """Every epoch's record in stats.jsonl, in order (a line a kill cut short is skipped)."""
        path = self.path / "stats.jsonl"
        text = path.read_text() if path.exists() else ""
        records = []
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def reconcile_stats(self, record: dict | None) -> None:
        """Append the epoch record saved inside last.pt when stats.jsonl lacks it (a kill between the checkpoint and
        the log line): the checkpoint and its stats line are one unit."""
        if not record:
            return
        if record["epoch"] not in {r.get("epoch") for r in self.records()}:
            self.log(record)

    def _remove_stale_temp_files(self) -> None:
        """Temp files a killed atomic save of this run's own files left behind (.NAME.<id>.tmp): never a complete
        file, always safe to drop. Other writers' temp files in the folder (an evaluate's report) are left alone."""
        own = (checkpoints.LAST, checkpoints.BEST_EMA, "config.yaml", "environment.json", "metrics.csv", "curves.png")
        for name in own:
            for stale in self.path.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
