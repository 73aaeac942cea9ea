"""The paper's representation analyses, one concept per module (used by `dra-pipeline analyze`).

align_uniform   alignment and uniformity of L2-normalised representations (Wang & Isola 2020)
cls_dimension   PCA "classification dimension": accuracy after projecting onto the top-k components
cknna           mutual-kNN-restricted centered kernel alignment (Huh et al. 2024)
sae             TopK sparse autoencoders and their normalised reconstruction loss (Gao et al. 2024)
frequency       centred Fourier-magnitude maps of perturbations and input gradients
teacher_probe   a linear probe on frozen teacher features, attacked through the teacher with its noise fixed
adversarial     PGD examples and penultimate representations of a classifier
inputs          what `analyze` reads: the run's classifier, test images, training rows and their stored features
figures         the PNG figures;  report: analysis.json, figures and analysis.md on disk
"""
