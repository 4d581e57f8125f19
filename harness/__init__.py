"""Reproduction harness for multi-stage pruning + distillation of BLIP-2-style LMMs (arXiv 2312.05795)."""

__version__ = "0.1.0"
