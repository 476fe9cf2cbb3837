"""DAT data preprocessor for mmseg segmentors."""
from mmseg.models.data_preprocessor import SegDataPreProcessor

from mmdat.registry import MODELS
from .dat_mixin import DATPreprocessorMixin


@MODELS.register_module()
class DATSegDataPreProcessor(DATPreprocessorMixin, SegDataPreProcessor):
    """``SegDataPreProcessor`` + DAT on each image's valid region; labels are never touched
    (``seg_pad_val`` / ignore index 255 stay as padded), image padding is restored bit for bit."""

    _channel_flag = 'channel_conversion'
