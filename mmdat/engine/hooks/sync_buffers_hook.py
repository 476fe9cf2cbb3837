"""One model on every rank: average BatchNorm running statistics (and other float buffers) over ranks."""
from __future__ import annotations

from mmengine.dist import all_reduce_params, get_world_size, is_distributed
from mmengine.hooks import Hook

from mmdat.registry import HOOKS

__all__ = ['RankAverageBuffersHook']


@HOOKS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class RankAverageBuffersHook(Hook):
    """Average the model's floating-point buffers over the ranks after every training iteration.

    DDP with ``broadcast_buffers=False`` (mmengine's default, and mmdat's CPU runs) leaves each rank
    with BatchNorm running statistics of its own data shard. A distributed validation then scores
    each rank's share of the validation set with a different model, while the checkpoint holds rank
    0's buffers only, so the logged validation metric is not the metric of the saved model.
    mmengine's ``SyncBuffersHook`` averages at the end of each epoch and before validation, which is
    too late for checkpoints saved by iteration (``CheckpointHook`` runs in ``after_train_iter``).

    Averaging after every iteration gives the same running statistics as averaging once at the end
    (the running averages are linear in each batch's statistics, and every rank starts from the same
    values), costs one small all-reduce, and does not touch training itself (BatchNorm normalises
    with the batch's statistics in training). Priority ``ABOVE_NORMAL``: before checkpoints are
    written and before validation. Integer and boolean buffers (``num_batches_tracked``) are equal on
    every rank and left alone. Does nothing in a single-process run.
    """

    priority = 'ABOVE_NORMAL'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not is_distributed() or get_world_size() < 2:
            return
        buffers = [b for b in runner.model.buffers() if b.is_floating_point()]
        if buffers:
            all_reduce_params(buffers, op='mean')
