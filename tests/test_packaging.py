"""The wheel carries every subpackage and data file that an editable install finds by accident."""

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {name: ROOT / path for name, path in setuptools["package-dir"].items()}

    def where(package: str) -> Path:
        parent, _, child = package.rpartition(".")
        return dirs.get(package) or where(parent) / child

    listed = set(setuptools["packages"])
    found = set()
    for name, path in dirs.items():
        for init in path.rglob("__init__.py"):
            rel = init.parent.relative_to(path).parts
            found.add(".".join((name, *rel)))
    assert found - listed == set(), "packages missing from pyproject's packages list (not in the wheel)"
    assert all(where(p).is_dir() for p in listed)


def test_presets_ship_as_package_data():
    from dra_pipeline.config import PRESETS_DIR

    assert (PRESETS_DIR / "fmnist-cpu.yaml").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*.yaml" in data["dra_pipeline.configs"]
