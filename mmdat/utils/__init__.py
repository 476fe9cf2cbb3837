from .checkpoint_compat import allow_mmengine_checkpoints, mmengine_checkpoint_globals
from .visualization import dat_triplet_grid, side_by_side, to_uint8_image

__all__ = ['allow_mmengine_checkpoints', 'mmengine_checkpoint_globals', 'dat_triplet_grid',
           'side_by_side', 'to_uint8_image']
