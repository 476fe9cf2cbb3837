"""A test-only model for distributed DAT runs: its loss runs a collective (as mmdet's ``reduce_mean``
and SyncBN do) and turns non-finite on one rank at chosen iterations."""
import torch
import torch.distributed as dist
from mmengine.logging import MessageHub
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS


@MODELS.register_module()
class CollectiveLossClassifier(ImageClassifier):
    """An ImageClassifier with one ``all_reduce`` in every loss call.

    Args:
        bad_rank: the rank whose loss goes wrong.
        nan_attack_iters: iterations at which the attack's loss (input gradient on) is NaN.
        inf_adversarial_iters: iterations at which the adversarial loss (the first loss without input
            gradient in the iteration; the clean one comes after it) is inf.
    """

    def __init__(self, *args, bad_rank: int = 1, nan_attack_iters=(), inf_adversarial_iters=(),
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bad_rank = bad_rank
        self.nan_attack_iters = set(nan_attack_iters)
        self.inf_adversarial_iters = set(inf_adversarial_iters)
        self._calls: dict[int, int] = {}

    def loss(self, inputs, data_samples):
        losses = super().loss(inputs, data_samples)
        if dist.is_initialized():  # a collective on every rank, in every loss call
            ones = torch.ones(1, device=inputs.device)
            dist.all_reduce(ones)
            losses = {k: v * ones[0] / dist.get_world_size() for k, v in losses.items()}
        iteration = MessageHub.get_current_instance().get_info('iter')
        bad = (dist.get_rank() if dist.is_initialized() else 0) == self.bad_rank
        if inputs.requires_grad:
            if bad and iteration in self.nan_attack_iters:
                losses = {k: v * float('nan') for k, v in losses.items()}
            return losses
        call = self._calls[iteration] = self._calls.get(iteration, 0) + 1
        if bad and iteration in self.inf_adversarial_iters and call == 1:
            losses = {k: v * float('inf') for k, v in losses.items()}
        return losses
