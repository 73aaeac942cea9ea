"""dra-pipeline: adversarial training with diffusion representation alignment (DRA).

    >>> import dra_pipeline as d
    >>> store = d.extract("edm-fmnist", n=1024).store    # teacher features of the first 1024 Fashion-MNIST images
    >>> run = d.train(store, epochs=1, out="runs/trial")  # TRADES + DRA
    >>> d.evaluate(run, n=100).report["robust"]           # AutoAttack, per-point worst case, 95 % interval

`extract`, `train`, `evaluate`, `load_store` and `load_classifier` are the public API (dra_pipeline.api, imported on
first use, so `import dra_pipeline` stays light). The import name is `dra_pipeline`; `pipeline/` holds the library,
`stages/` the pipeline stages and `cache/` the feature store (see pyproject's package-dir).
"""

from dra_pipeline.version import __version__

API = ("extract", "train", "evaluate", "load_store", "load_classifier")
__all__ = ["__version__", *API]


def __getattr__(name: str):
    if name in API:
        from dra_pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'dra_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
