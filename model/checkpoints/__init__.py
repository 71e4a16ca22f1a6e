"""Shipped attention checkpoints (see README.md here); :func:`model.nn.infer.default_checkpoint` finds them."""
