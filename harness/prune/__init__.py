"""Pruning: first-order importance (Eq. 1–4) and structural surgery that yields standard HF checkpoints."""
