"""Streaming ptychography, the science: a detector simulator, ePIE, a PtychoNN-style CNN
and the actors that run them (see ``docs/ptychography.md``).

- :mod:`actors.ptycho.simulate`: the known object, the probe, the scan, Poisson
  far-field patterns, grouped in scans and tiles (numpy only).
- :mod:`actors.ptycho.epie`: ePIE per tile with a known probe (numpy only).
- :mod:`actors.ptycho.metrics`: registered error, SSIM and PSNR (numpy only).
- :mod:`actors.ptycho.model`: the CNN as a ``LightningModule``, the online trainer,
  checkpoints as bytes, batched inference (torch; the ``ml`` extra).
- :mod:`actors.ptycho.actors`: Detector, Reconstructor, Trainer, EdgeInference.
"""
