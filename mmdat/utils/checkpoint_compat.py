"""Let torch's weights-only loading read mmengine checkpoints (needed to resume long DAT runs).

torch >= 2.6 loads weights-only by default and mmengine passes no ``weights_only``; mmengine's
checkpoints hold a few plain objects (the message hub's ``HistoryBuffer``, numpy arrays and
scalars). We allow-list exactly those instead of turning weights-only loading off.

``getattr`` is among them because a ``HistoryBuffer`` pickles its statistics methods as
``getattr(buffer, 'mean')``; the weights-only unpickler still refuses to *call* anything that is
not itself allow-listed, so this exposes no new callable.
"""
from __future__ import annotations

import numpy as np
import torch


def mmengine_checkpoint_globals() -> list:
    """The non-tensor classes/functions that mmengine writes into its checkpoints."""
    from mmengine.logging.history_buffer import HistoryBuffer
    safe = [HistoryBuffer, getattr, np.ndarray, np.dtype, np._core.multiarray._reconstruct,
            np._core.multiarray.scalar]
    # numpy's dtype classes (e.g. numpy.dtypes.Float64DType) pickle by class
    safe += [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith('DType')]
    return safe


def allow_mmengine_checkpoints() -> None:
    """Register :func:`mmengine_checkpoint_globals` with ``torch.serialization``; idempotent."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
