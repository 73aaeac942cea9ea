"""dra-pipeline: adversarial training with diffusion representation alignment (DRA).

The import name is `dra_pipeline`; `pipeline/` holds the library, `stages/` the pipeline stages and `cache/`
the feature store (see pyproject's package-dir).
"""

from dra_pipeline.version import __version__

__all__ = ["__version__"]
