"""DAT data preprocessor for mmpretrain classifiers."""
from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor

from mmdat.registry import MODELS
from .dat_mixin import DATPreprocessorMixin


@MODELS.register_module()
class DATClsDataPreprocessor(DATPreprocessorMixin, ClsDataPreprocessor):
    """``ClsDataPreprocessor`` + DAT (after Mixup/CutMix, so soft targets are attacked as trained).

    Config: change ``type`` and add ``dat=dict(...)``; every base setting still applies.
    """

    _channel_flag = 'to_rgb'
