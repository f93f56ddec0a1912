"""FOCUS (seed 002): a model-based face autoencoder with an outlier segmentation network, trained EM-style.

BASELINES.md Part A is its specification. Here so far: the losses and preliminary masks (:mod:`.losses`).
"""
