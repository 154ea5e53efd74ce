"""The numbers a file from others holds are finite: a NaN in demo frames or normalisation statistics
trains an all-NaN checkpoint with exit 0, or evaluates as a quiet 0 %."""

from __future__ import annotations

from lerobot_amf.trust.files import UntrustedFileError


def check_finite(values: dict, what: str) -> None:
    """Every floating-point array or tensor in ``values`` (name -> array) is finite, else one line
    naming the first name that is not and how many of its values are not."""
    import numpy as np
    import torch

    for name, value in values.items():
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise UntrustedFileError(f"{what}: {name!r} holds {bad} non-finite value(s) (NaN or inf) of {array.size}: "
                                     "refused, nothing was trained on it or saved.")


def check_finite_processors(processors, what: str) -> None:
    """The state of every step of these LeRobot processor pipelines (normalisation statistics) is finite."""
    for processor in processors:
        for step in getattr(processor, "steps", []):
            check_finite(step.state_dict(), f"{what}, processor step {type(step).__name__}")
