"""The DAT algorithm, independent of OpenMMLab."""
from .attack import DATAttack, DATResult, valid_region_mask

__all__ = ['DATAttack', 'DATResult', 'valid_region_mask']
