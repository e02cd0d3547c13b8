"""Building models cheaply.

- :func:`skip_init`: build a model that is about to receive checkpoint weights without running its random
  initialisers; the checkpoint tensors (memory-mapped) are then assigned in place
  (``load_state_dict(assign=True)``), so loading costs no copy.
- :func:`parameters_on_meta`: build a model for its shapes only (layouts, parameter and MAC counts).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Move every parameter to ``meta`` as it is registered (buffers and plain tensors stay on CPU).

    Initialisers that run after registration (``reset_parameters``) then cost nothing. Works for builders
    that need real data while building (e.g. ``torch.linspace(...).tolist()``), which a ``meta`` default
    device breaks. Not thread-safe (it patches :meth:`torch.nn.Module.register_parameter`).
    """
    original = nn.Module.register_parameter

    def register(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = type(param)(param.to("meta"), requires_grad=param.requires_grad)
        original(self, name, param)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


@contextmanager
def skip_init() -> Iterator[None]:
    """Make every ``torch.nn.init`` initialiser a no-op while a model is built.

    Parameters keep the uninitialised memory of ``torch.empty`` (untouched pages cost nothing), which is
    right for a model whose weights are about to be replaced by a checkpoint's. Initialise what the
    checkpoint does not hold afterwards with :func:`reset_missing`. Not thread-safe (it patches
    :mod:`torch.nn.init`).
    """
    initialisers = {n: f for n, f in vars(nn.init).items() if n.endswith("_") and not n.startswith("_") and callable(f)}

    def noop(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return tensor

    for name in initialisers:
        setattr(nn.init, name, noop)
    try:
        yield
    finally:
        for name, fn in initialisers.items():
            setattr(nn.init, name, fn)


def reset_missing(module: nn.Module, missing: list[str]) -> bool:
    """Initialise the parameters named in ``missing`` (state-dict keys) with their modules'
    ``reset_parameters``. Returns ``False`` if some owner has no ``reset_parameters``."""
    owners = {key.rpartition(".")[0] for key in missing}
    for name in sorted(owners):
        sub = module.get_submodule(name) if name else module
        if not hasattr(sub, "reset_parameters"):
            return False
        sub.reset_parameters()
    return True
