"""DAT data preprocessor for mmpretrain classifiers."""
from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor

from mmdat.registry import MODELS
from .dat_mixin import DATPreprocessorMixin
from .upstream import normalization_of, upstream_attribute


# also under the near-miss spelling 'DATClsDataPreProcessor' (mmseg's capitalisation)
# force=True: replaces the deferred entry of mmdat.registry
@MODELS.register_module(name=['DATClsDataPreprocessor', 'DATClsDataPreProcessor'], force=True)
class DATClsDataPreprocessor(DATPreprocessorMixin, ClsDataPreprocessor):
    """``ClsDataPreprocessor`` + DAT (after Mixup/CutMix, so soft targets are attacked as trained).

    Config: change ``type`` and add ``dat=dict(...)``; every base setting still applies.
    """

    def upstream_rgb(self) -> bool:
        return bool(upstream_attribute(self, 'to_rgb'))

    def upstream_normalization(self):
        return normalization_of(self)
