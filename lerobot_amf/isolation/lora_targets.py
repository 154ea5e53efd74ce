"""``--peft.target_modules`` checked against the policy before peft wraps it.

peft 0.21 raises a multi-line ``ValueError`` only when *no* module matches, and silently adapts
fewer layers when some of the listed names match nothing; a matched module of a type LoRA
cannot wrap (a ``GroupNorm``, a ``Sequential``) is a traceback from deep inside peft.
``check_lora_targets`` turns all three into one ``AMFInputError`` naming the bad entries and the
modules that would fit, using peft's own matching rules (a list entry matches a module named
exactly so or ending in ``.<entry>``; a string is a regular expression over the full name).
"""

from __future__ import annotations

import re

import torch.nn as nn

from lerobot_amf.errors import AMFInputError

ALL_LINEAR = "all-linear"  # peft's shorthand


def _lora_types() -> tuple[type, ...]:
    """Module types peft's LoRA can wrap (its ``dispatch_default``)."""
    types: tuple[type, ...] = (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)
    try:
        from transformers.pytorch_utils import Conv1D

        types += (Conv1D,)
    except ImportError:
        pass
    return types


def check_lora_targets(policy: nn.Module, target_modules: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """The names of the modules ``target_modules`` selects in ``policy``; ``AMFInputError`` if any entry
    matches nothing or a selected module is not one LoRA can wrap. ``None``: the policy's LeRobot default."""
    if target_modules is None:
        defaults = getattr(policy, "_get_default_peft_targets", lambda: None)() or {}
        target_modules = defaults.get("target_modules")
        if target_modules is None:
            raise AMFInputError(f"--peft.target_modules is not set and policy type "
                                f"{getattr(policy.config, 'type', type(policy).__name__)!r} has no default: pass one.")
    names = {name: module for name, module in policy.named_modules() if name}
    wrappable = _lora_types()
    linear_like = sorted(n for n, m in names.items() if isinstance(m, wrappable))
    hint = f"Modules LoRA can wrap here (first 8 of {len(linear_like)}): {', '.join(linear_like[:8])}."
    if isinstance(target_modules, str):
        if target_modules == ALL_LINEAR:
            selected = [n for n, m in names.items() if isinstance(m, nn.Linear)]
            if not selected:
                raise AMFInputError(f"--peft.target_modules={ALL_LINEAR}: the policy has no Linear layer. {hint}")
            return selected
        try:
            pattern = re.compile(target_modules)
        except re.error as err:
            raise AMFInputError(f"--peft.target_modules={target_modules!r}: not a valid regular expression ({err}).") from None
        selected = [n for n in names if pattern.fullmatch(n)]
        if not selected:
            raise AMFInputError(f"--peft.target_modules={target_modules!r} matches no module of the policy "
                                f"(a string is a regular expression over full module names). {hint}")
    else:
        entries = list(target_modules)
        if not entries:
            raise AMFInputError(f"--peft.target_modules is empty. {hint}")
        unmatched = [e for e in entries if not any(n == e or n.endswith(f".{e}") for n in names)]
        if unmatched:
            raise AMFInputError(f"--peft.target_modules names module(s) not in the policy: {', '.join(unmatched)}. {hint}")
        selected = [n for n in names if any(n == e or n.endswith(f".{e}") for e in entries)]
    unsupported = [f"{n} ({type(names[n]).__name__})" for n in selected if not isinstance(names[n], wrappable)]
    if unsupported:
        raise AMFInputError(f"--peft.target_modules selects module(s) LoRA cannot wrap: {', '.join(unsupported[:5])}"
                            f"{' ...' if len(unsupported) > 5 else ''}. Allowed types: Linear, Embedding, Conv1d/2d/3d, "
                            f"MultiheadAttention. {hint}")
    return selected
