"""DAT data preprocessor for mmdet detectors."""
from mmdet.models.data_preprocessors import DetDataPreprocessor

from mmdat.registry import MODELS
from .dat_mixin import DATPreprocessorMixin


@MODELS.register_module()
class DATDetDataPreprocessor(DATPreprocessorMixin, DetDataPreprocessor):
    """``DetDataPreprocessor`` + DAT on each image's valid region (``img_shape``).

    DAT runs after padding and ``batch_augments`` (e.g. ``BatchSyncRandomResize``); padded pixels
    are restored bit for bit, so boxes, masks and ``batch_input_shape`` stay valid. Caffe-style
    configs (``bgr_to_rgb=False``) are converted to RGB for the VQGAN and back.
    """

    _channel_flag = '_channel_conversion'
