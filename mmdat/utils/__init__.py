from .checkpoint_safety import (CheckpointSecurityError, StandIn, load_checkpoint_file,
                                load_mmengine_checkpoint, stand_ins_in)
from .visualization import dat_triplet_grid, side_by_side, to_uint8_image

__all__ = ['CheckpointSecurityError', 'StandIn', 'load_checkpoint_file', 'load_mmengine_checkpoint',
           'stand_ins_in', 'dat_triplet_grid', 'side_by_side', 'to_uint8_image']
