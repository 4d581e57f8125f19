"""Distillation: Eq. 5 and its ablations, and the loop that runs them on cached teacher outputs."""
