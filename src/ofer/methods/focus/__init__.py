"""FOCUS (seed 002): a model-based face autoencoder with an outlier segmentation network, trained EM-style.

BASELINES.md Part A is its specification. Here so far: the losses and preliminary masks (:mod:`.losses`),
the EM schedule (:mod:`.schedule`) and the misfit prior (:mod:`.misfit`); the segmentation network is
:class:`ofer.networks.unet.UNet`, the perceptual network :func:`ofer.frontend.encoders.arcface_torch.torch_arcface`.
"""
