"""The paper's representation analyses, one module each (math, figure, runner and analysis.md section), registered
once in `registry.ANALYSES` in the order analysis.md shows them:

align_uniform    alignment and uniformity of L2-normalised representations (Wang & Isola 2020)
cls_dimension    PCA "classification dimension": accuracy after projecting onto the top-k components
cknna            mutual-kNN-restricted centered kernel alignment (Huh et al. 2024)
sae              TopK sparse autoencoders and their normalised reconstruction loss (Gao et al. 2024)
frequency        centred Fourier-magnitude maps of perturbations and input gradients
teacher_probe    a linear probe on frozen teacher features, attacked through the teacher with its noise fixed

Shared parts: context (inputs and the PGD examples computed once), adversarial (PGD examples and representations),
teacher_features (differentiable teacher features), numbers, report (analysis.json, figures and analysis.md).
"""

from dra_pipeline.analysis import align_uniform, cknna, cls_dimension, frequency, sae, teacher_probe  # noqa: F401
from dra_pipeline.analysis.registry import ANALYSES

__all__ = ["ANALYSES"]
