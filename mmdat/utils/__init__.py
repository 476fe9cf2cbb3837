from .checkpoint_safety import (CheckpointSecurityError, checkpoint_global_names,
                                mmengine_checkpoint_globals, mmengine_checkpoint_objects,
                                refused_global_names)
from .visualization import dat_triplet_grid, side_by_side, to_uint8_image

__all__ = ['CheckpointSecurityError', 'checkpoint_global_names', 'mmengine_checkpoint_globals',
           'mmengine_checkpoint_objects', 'refused_global_names', 'dat_triplet_grid',
           'side_by_side', 'to_uint8_image']
