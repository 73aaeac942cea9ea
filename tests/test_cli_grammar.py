"""One grammar for every command (issue 18): walks every (sub)command of `dra-pipeline` and checks its options; then
--quiet / --verbose, TQDM_DISABLE, eps as a fraction and the training knobs as flags."""

import logging
import re

import click
import pytest
import yaml
from click.testing import CliRunner

from dra_pipeline.cli import main
from dra_pipeline.commands.types import Eps
from dra_pipeline.logs import AUTOATTACK_LOGGER
from tests import fixtures
from tests.test_train import extract_store, train_args

WRITES = {  # commands that write files: each names its output with --out
    "extract",
    "generate",
    "train",
    "evaluate",
    "analyze",
    "cache export",
    "data convert-npz",
    "teacher convert",
    "teacher fit",
}
RUNS_A_MODEL = {"extract", "generate", "train", "evaluate", "analyze", "teacher fit", "teacher probe"}
RUNS_A_MODEL |= {"teacher massive-channels"}
NOT_COUNTS = re.compile(r"--(seed|steps|[a-z-]+-steps|batch-size|workers|rows-per-shard|epochs)$")


def commands(command=main, path=()):
    """(name path, command) for the group and every (sub)command under it."""
    yield " ".join(path), command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))


ALL = dict(commands())


def options(command) -> dict[str, click.Option]:
    return {name: p for p in command.params if isinstance(p, click.Option) for name in (*p.opts, *p.secondary_opts)}


def test_the_walk_finds_every_command():
    assert {"", "extract", "cache", "cache export", "teacher probe", "data info", "evaluate"} <= set(ALL)
    assert len(ALL) == 19  # the group, 4 sub-groups and 14 commands


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_command_follows_the_grammar(name):
    opts = options(ALL[name])
    assert not {"--to", "--count", "--limit", "--top", "--num", "--number"} & set(opts)
    assert opts.get("-q") is opts.get("--quiet") is not None and opts.get("-v") is opts.get("--verbose") is not None
    if "--device" in opts:
        assert opts["--device"].default == "auto"
    assert ("--device" in opts) == (name in RUNS_A_MODEL)
    if name in WRITES:
        assert "--out" in opts
    for opt, param in opts.items():
        if isinstance(param.type, click.types.IntParamType) and not NOT_COUNTS.match(opt):
            assert opt == "--n" or opt.endswith("-n"), f"{name} {opt}: a count is --n or --*-n"
        if isinstance(param.type, click.Choice) and isinstance(param.default, str):
            assert param.default in param.type.choices, f"{name} {opt}: default spelled as a choice"
        if opt.startswith("--eps") and opt != "--eps-grid":
            assert isinstance(param.type, Eps)


def test_train_help_shows_the_common_knobs():
    result = CliRunner().invoke(main, ["train", "--help"])
    for flag in ("--device", "--seed", "--epochs", "--lr", "--batch-size", "-q, --quiet", "-v, --verbose"):
        assert flag in result.output


def test_help_spells_choices_as_they_are_accepted():
    result = CliRunner().invoke(main, ["evaluate", "--help"])
    assert "[Linf|L2]" in result.output and "[default: Linf]" in result.output


@pytest.mark.parametrize(("text", "value"), [("8/255", 8 / 255), ("0.031", 0.031), (" 2/255", 2 / 255), (1e-3, 1e-3)])
def test_eps_is_a_number_or_a_fraction(text, value):
    assert Eps().convert(text, None, None) == pytest.approx(value)


@pytest.mark.parametrize("text", ["0", "-1/255", "inf", "nan", "8/0", "eight", "1/2/3"])
def test_eps_is_positive_and_finite(text):
    with pytest.raises(click.BadParameter, match="not a positive finite number or a fraction such as 8/255"):
        Eps().convert(text, None, None)


# ---- train's knobs are --set shorthands --------------------------------------------------------------------------
def dry_run(*args):
    result = CliRunner().invoke(main, ["train", "--config", "fmnist-cpu", "--dry-run", *args])
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout)


def test_train_flags_are_shorthands_for_set():
    flags = dry_run("--device", "auto", "--seed", "3", "--epochs", "2", "--lr", "0.5", "--batch-size", "8")
    sets = ("train.device=auto", "train.seed=3", "train.epochs=2", "train.lr=0.5", "train.batch_size=8")
    assert flags == dry_run(*(a for s in sets for a in ("--set", s)))
    assert flags["train"]["device"] == "auto" and flags["train"]["epochs"] == 2 and flags["train"]["lr"] == 0.5
    assert dry_run()["train"]["device"] == "cpu"  # --device not given: the preset's (fmnist-cpu trains on the CPU)


# ---- messages and bars ---------------------------------------------------------------------------------------------
@pytest.fixture
def data(tmp_path):
    d = tmp_path / "fashion-mnist"
    fixtures.write_fashion_mnist(d, n_train=80, n_test=20)
    return d


def test_quiet_and_verbose_set_what_reaches_stderr(tmp_path, data):
    store = tmp_path / "s.zarr"
    extract_store(data, store)
    run = CliRunner()
    plain = run.invoke(main, ["train", "--features", str(store), "--dry-run"])
    assert plain.exit_code == 0 and plain.stderr.startswith("preset fmnist-cpu: ")  # INFO by default
    for quiet in (["train", "-q"], ["-q", "train"], ["train", "--quiet"]):
        result = run.invoke(main, [*quiet, "--features", str(store), "--dry-run"])
        assert result.exit_code == 0 and result.stderr == "" and result.stdout == plain.stdout
    verbose = run.invoke(main, ["train", "-v", "--features", str(store), "--dry-run"])
    assert verbose.exit_code == 0 and verbose.stderr.startswith("preset fmnist-cpu: ")
    autoattack = logging.getLogger(AUTOATTACK_LOGGER)
    assert autoattack.level == logging.DEBUG and autoattack.handlers  # -v: AutoAttack's own progress is shown
    assert run.invoke(main, ["train", "--features", str(store), "--dry-run"]).exit_code == 0
    assert autoattack.level == logging.NOTSET and not autoattack.handlers  # its warnings are the evaluation's flags
    both = run.invoke(main, ["-q", "train", "-v", "--features", str(store), "--dry-run"])
    assert both.exit_code == 2 and "--quiet and --verbose exclude each other" in both.output


def bars(text: str) -> list[str]:
    """tqdm's bar lines in captured stderr (a bar redraws with carriage returns)."""
    return [line for line in re.split(r"[\r\n]", text) if "%|" in line]


@pytest.mark.parametrize("how", ["env", "quiet"])
def test_tqdm_disable_and_quiet_hide_every_bar(tmp_path, data, monkeypatch, how):
    """Extraction's and training's bars (tqdm reads TQDM_DISABLE once, at import: here it is set afterwards)."""
    run = CliRunner()
    extract = ["extract", "--teacher", "tiny-gray", "--data", "fashion-mnist", "--data-dir", str(data), "--device"]
    shown = run.invoke(main, [*extract, "cpu", "--out", str(tmp_path / "a.zarr")])
    assert shown.exit_code == 0 and bars(shown.stderr)  # shown by default, even off a terminal
    if how == "env":
        monkeypatch.setenv("TQDM_DISABLE", "1")
    quiet = ["-q"] if how == "quiet" else []
    hidden = run.invoke(main, [*extract, "cpu", "--out", str(tmp_path / "b.zarr"), *quiet])
    assert hidden.exit_code == 0 and not bars(hidden.stderr)
    trained = run.invoke(main, [*train_args(data, tmp_path / "run", epochs=1, features=tmp_path / "b.zarr"), *quiet])
    assert trained.exit_code == 0 and not bars(trained.stderr), trained.stderr
    assert ("epoch 1/1" in trained.stderr) == (how == "env")  # the epoch line is INFO: --quiet hides it too


def test_comma_lists_keep_each_value_once_in_its_first_place():
    from dra_pipeline.commands.types import comma_list

    assert comma_list(float)(None, None, "0.1, 0.02,0.1") == [0.1, 0.02]
    assert comma_list(str)(None, None, "dec.8x8_in1,dec.8x8_block4,dec.8x8_in1") == ["dec.8x8_in1", "dec.8x8_block4"]
    assert comma_list(str)(None, None, None) is None
