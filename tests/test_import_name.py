"""The import name `dra_pipeline` works the way tools expect: from any directory, as `python -m dra_pipeline`, and
for a static checker (pyright) resolving every import of the package from the editable install."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_package_and_module_entry_point_work_from_another_directory(tmp_path):
    code = "import dra_pipeline, dra_pipeline.stages.train, dra_pipeline.cache; print(dra_pipeline.__version__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "dra_pipeline", "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0 and "extract" in done.stdout and "evaluate" in done.stdout, done.stderr


def test_pyright_resolves_every_import(tmp_path):
    """Unresolved imports and unknown imported names are errors; other type findings are not this test's business."""
    config = tmp_path / "pyrightconfig.json"
    settings = {"typeCheckingMode": "off", "reportMissingImports": "error", "reportAttributeAccessIssue": "error"}
    config.write_text(json.dumps(settings))
    pyright = Path(sys.executable).with_name("pyright")
    command = [
        str(pyright),
        "-p",
        str(config),
        "--pythonpath",
        sys.executable,
        "--outputjson",
        "pipeline",
        "stages",
        "cache",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout)
    assert report["summary"]["filesAnalyzed"] >= 90
    unresolved = [
        f"{Path(d['file']).relative_to(ROOT)}:{d['range']['start']['line'] + 1}: {d['message']}"
        for d in report["generalDiagnostics"]
        if d.get("rule") == "reportMissingImports" or "is unknown import symbol" in d["message"]
    ]
    assert unresolved == []
