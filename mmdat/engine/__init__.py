from .hooks import DATHook
from .runner import CheckpointSafeRunner, load_model_checkpoint

__all__ = ['DATHook', 'CheckpointSafeRunner', 'load_model_checkpoint']
