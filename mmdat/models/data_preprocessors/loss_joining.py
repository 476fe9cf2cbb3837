"""How the adversarial losses join the optimised loss: a forward hook on the task model."""
from __future__ import annotations

import weakref
from typing import Optional

import torch

from mmdat.dat import merge_dat_losses


class AdversarialLossJoiner:
    """Holds one iteration's adversarial losses until the model's loss forward takes them.

    A forward hook on the model (PyTorch's extension point; no method of the model is replaced)
    returns, for ``forward(..., mode='loss')``, the loss dict merged by
    :func:`mmdat.dat.merge_dat_losses`: ``clean_weight * L(x) + adv_weight * L(x_adv)`` once the
    model's ``parse_losses`` sums it. :meth:`check_consumed` fails loudly when a ``train_step``
    never made that call, instead of letting the run train plain.

    Args:
        model: the unwrapped task model (kept as a weak reference).
        clean_weight, adv_weight: weights of the clean and adversarial losses.
    """

    def __init__(self, model: torch.nn.Module, clean_weight: float = 1.0, adv_weight: float = 1.0) -> None:
        self.model_ref = weakref.ref(model)
        self.clean_weight, self.adv_weight = float(clean_weight), float(adv_weight)
        self.pending: Optional[dict] = None
        self_ref = weakref.ref(self)

        def hook(module, args, kwargs, output):
            joiner = self_ref()
            mode = kwargs.get('mode', args[2] if len(args) > 2 else None)
            if joiner is None or joiner.pending is None or mode != 'loss' or not isinstance(output, dict):
                return None
            return joiner.merge(output)

        self.handle = model.register_forward_hook(hook, with_kwargs=True)

    def put(self, adversarial_losses: dict) -> None:
        """The adversarial losses of this iteration (graph kept, unprefixed, unweighted). They replace
        any left from an earlier preprocessor call (e.g. a batch inspected outside training); within
        training, ``DATHook`` checks after every iteration that they were consumed."""
        self.pending = adversarial_losses

    def merge(self, clean_losses: dict) -> dict:
        """``clean_losses`` with the pending adversarial losses joined (consumes them once)."""
        pending, self.pending = self.pending, None
        if pending is None:
            return clean_losses
        return merge_dat_losses(clean_losses, pending, self.clean_weight, self.adv_weight)

    def check_consumed(self) -> None:
        """Raise if adversarial losses are still pending, i.e. no loss forward used them."""
        if self.pending is None:
            return
        self.pending = None
        name = type(self.model_ref()).__name__ if self.model_ref() is not None else 'the model'
        raise RuntimeError(
            f'DAT: the adversarial losses of this iteration were computed but {name}.train_step '
            "never passed them to its loss: DAT adds them to the loss dict returned by the model's "
            "forward(inputs, data_samples, mode='loss'), and this train_step does not call it. "
            f"Call self(**data, mode='loss') (or self._run_forward(data, mode='loss')) in "
            f'{name}.train_step and parse the returned dict, or train this model without DAT.')

    def remove(self) -> None:
        self.handle.remove()
        self.pending = None
