"""DAT data preprocessor for mmseg segmentors."""
from mmseg.models.data_preprocessor import SegDataPreProcessor

from mmdat.registry import MODELS
from .dat_mixin import DATPreprocessorMixin
from .upstream import normalization_of, upstream_attribute


# also under the near-miss spelling 'DATSegDataPreprocessor' (mmseg writes 'PreProcessor',
# mmdet and mmpretrain 'Preprocessor')
# force=True: replaces the deferred entry of mmdat.registry
@MODELS.register_module(name=['DATSegDataPreProcessor', 'DATSegDataPreprocessor'], force=True)
class DATSegDataPreProcessor(DATPreprocessorMixin, SegDataPreProcessor):
    """``SegDataPreProcessor`` + DAT on each image's valid region; labels are never touched
    (``seg_pad_val`` / ignore index 255 stay as padded), image padding is restored bit for bit."""

    def upstream_rgb(self) -> bool:
        return bool(upstream_attribute(self, 'channel_conversion'))

    def upstream_normalization(self):
        return normalization_of(self)
