"""The DAT algorithm, independent of OpenMMLab: the attack, its schedule, the loss composition."""
from .attack import DATAttack, DATResult, valid_region_mask
from .losses import ADV_PREFIX, merge_dat_losses, rename_loss_dict, reweight_loss_dict
from .schedule import DATIterationSettings, DATSchedule

__all__ = ['DATAttack', 'DATResult', 'valid_region_mask', 'ADV_PREFIX', 'merge_dat_losses',
           'rename_loss_dict', 'reweight_loss_dict', 'DATIterationSettings', 'DATSchedule']
