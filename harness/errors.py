"""Errors the CLI reports as one line, defined where importing them costs nothing (no torch): the CLI
catches them around every command, `report` included."""


class PruningError(ValueError):
    """A pruning request that cannot be carried out; raised before the model is touched."""


class CheckpointError(ValueError):
    """A checkpoint the harness cannot use; raised before any weights are loaded."""


class DeviceError(ValueError):
    """A device or dtype this machine cannot run (harness/device.py), named before any work starts; the
    message starts with the profile field ("device: ..." or "dtype: ...")."""
