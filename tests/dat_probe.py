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
