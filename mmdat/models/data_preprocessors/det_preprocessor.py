"""DAT data preprocessor for mmdet detectors."""
from mmdet.models.data_preprocessors import DetDataPreprocessor

from mmdat.registry import MODELS
from .dat_mixin import DATPreprocessorMixin
from .upstream import normalization_of, upstream_attribute


# also under the near-miss spelling 'DATDetDataPreProcessor' (mmseg's capitalisation)
# force=True: replaces the deferred entry of mmdat.registry
@MODELS.register_module(name=['DATDetDataPreprocessor', 'DATDetDataPreProcessor'], force=True)
class DATDetDataPreprocessor(DATPreprocessorMixin, DetDataPreprocessor):
    """``DetDataPreprocessor`` + DAT on each image's valid region (``img_shape``).

    DAT runs after padding and ``batch_augments`` (e.g. ``BatchSyncRandomResize``); padded pixels
    are restored bit for bit, so boxes, masks and ``batch_input_shape`` stay valid. Caffe-style
    configs (``bgr_to_rgb=False``) are converted to RGB for the VQGAN and back.
    """

    def upstream_rgb(self) -> bool:
        return bool(upstream_attribute(self, '_channel_conversion'))

    def upstream_normalization(self):
        return normalization_of(self)
