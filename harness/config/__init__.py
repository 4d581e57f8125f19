"""The configuration: every schema an experiment or profile file is validated against, the paper's vocabulary,
and reading those files. Torch-free; validators never read files (harness/preflight.py does, before work).
"""
