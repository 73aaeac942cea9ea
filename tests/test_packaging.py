"""The built wheel carries every module and data file of the tree, under the import name `dra_pipeline`."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.test_layers import module_files, package_dirs

ROOT = Path(__file__).resolve().parents[1]


def wheel_names(tmp_path: Path) -> set[str]:
    """Build the wheel from a fresh copy of the tree (a build/ folder left in the checkout would leak stale files)."""
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "runs", "*.zarr", "*.egg-info", "docs"))
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "-w", str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("dra_pipeline-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_wheel_holds_every_module_and_data_file_of_the_tree(tmp_path):
    names = wheel_names(tmp_path)
    expected = set()
    for module, path in module_files().items():
        relative = module.replace(".", "/") + ("/__init__.py" if path.name == "__init__.py" else ".py")
        expected.add(relative)
    dirs = package_dirs()
    expected |= {f"dra_pipeline/configs/{p.name}" for p in dirs["dra_pipeline.configs"].glob("*.yaml")}
    expected |= {
        f"dra_pipeline/teachers/weights/{p.name}" for p in (dirs["dra_pipeline"] / "teachers/weights").iterdir()
    }
    assert expected - names == set(), "in the tree but not in the wheel"
    assert not any(n.startswith("tests/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert entry.startswith("dra_pipeline-")
    licence = next(n for n in names if n.endswith("licenses/LICENSE"))  # the declared Apache-2.0 licence travels
    assert licence.startswith("dra_pipeline-")


def test_presets_ship_as_package_data():
    from dra_pipeline.config import PRESETS_DIR

    assert (PRESETS_DIR / "fmnist-cpu.yaml").is_file()
