"""A test-only hook: records every rank's DAT decisions to check that all ranks decide alike."""
import json
from pathlib import Path

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mmdat.engine import DATHook


@HOOKS.register_module()
class DATDecisionRecorder(Hook):
    priority = 'LOW'

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.decisions = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.decisions.append(DATHook.dat_preprocessor(runner).last_dat_report.decision())

    def after_train(self, runner) -> None:
        path = self.out_dir / f'decisions_rank{get_rank()}.json'
        path.write_text(json.dumps(self.decisions))


def buffer_digest(named_buffers) -> str:
    """sha256 of the floating-point buffers (name order), to compare models across processes."""
    import hashlib
    digest = hashlib.sha256()
    for name, buf in sorted(named_buffers):
        if buf.is_floating_point():
            digest.update(name.encode())
            digest.update(buf.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@HOOKS.register_module()
class BufferRecorder(Hook):
    """Records, on every rank, the model's float buffers (BatchNorm statistics) at each validation
    and the validation metrics, to check that all ranks validate one model."""

    priority = 'LOWEST'

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.digest = None

    def before_val_epoch(self, runner) -> None:
        from mmengine.model import is_model_wrapper
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        saved = set(model.state_dict())  # the buffers a checkpoint holds (not mean/std of preprocessors)
        self.digest = buffer_digest((n, b) for n, b in model.named_buffers() if n in saved)

    def after_val_epoch(self, runner, metrics=None) -> None:
        path = self.out_dir / f'buffers_rank{get_rank()}.json'
        path.write_text(json.dumps(dict(digest=self.digest, metrics={k: float(v) for k, v in (metrics or {}).items()})))
