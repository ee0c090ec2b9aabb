"""Training of the CNN regressor (``facerecon train``): synthetic data rendered by the core,
the seeds' position-map network, the training loop and the ONNX export.

Uses the core; the core never imports this package (inference is ``facerecon.regress``, on ONNX
Runtime). Needs the ``train`` extra (torch, pyyaml, onnx).
"""
