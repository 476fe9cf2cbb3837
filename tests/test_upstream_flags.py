"""The private upstream attributes DAT reads still exist and mean what DAT assumes (per family).

If an mmpretrain / mmdet / mmseg release renames ``to_rgb`` / ``_channel_conversion`` /
``channel_conversion`` / ``_enable_normalize`` / ``mean`` / ``std``, these tests fail loudly.
"""
import importlib

import pytest
import torch

import mmdat  # noqa: F401

FAMILIES = {  # family: (upstream module, upstream class, rgb keyword, DAT class, flag)
    'mmpretrain': ('mmpretrain.models.utils.data_preprocessor', 'ClsDataPreprocessor', 'to_rgb',
                   'DATClsDataPreprocessor', 'to_rgb'),
    'mmdet': ('mmdet.models.data_preprocessors', 'DetDataPreprocessor', 'bgr_to_rgb',
              'DATDetDataPreprocessor', '_channel_conversion'),
    'mmseg': ('mmseg.models.data_preprocessor', 'SegDataPreProcessor', 'bgr_to_rgb',
              'DATSegDataPreProcessor', 'channel_conversion'),
}
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


@pytest.mark.parametrize('family', sorted(FAMILIES))
@pytest.mark.parametrize('rgb', [True, False])
def test_upstream_flags_exist_and_match(family, rgb):
    module, cls_name, keyword, dat_name, flag = FAMILIES[family]
    upstream = getattr(importlib.import_module(module), cls_name)(mean=MEAN, std=STD, **{keyword: rgb})
    assert getattr(upstream, flag) is rgb, f'{cls_name}.{flag} no longer reflects {keyword}'
    assert upstream._enable_normalize is True
    assert torch.allclose(upstream.mean.flatten(), torch.tensor(MEAN))
    assert torch.allclose(upstream.std.flatten(), torch.tensor(STD))
    plain = getattr(importlib.import_module(module), cls_name)()
    assert plain._enable_normalize is False

    from mmdat.models import data_preprocessors
    ours = getattr(data_preprocessors, dat_name)(mean=MEAN, std=STD, **{keyword: rgb})
    assert ours.upstream_rgb() is rgb
    mean, std = ours.upstream_normalization()
    assert mean is ours.mean and std is ours.std
    assert getattr(data_preprocessors, dat_name)().upstream_normalization() is None


def test_a_renamed_flag_fails_loudly():
    from mmdat.models.data_preprocessors import DATClsDataPreprocessor
    pre = DATClsDataPreprocessor(mean=MEAN, std=STD, to_rgb=True)
    del pre.to_rgb
    with pytest.raises(AttributeError, match="ClsDataPreprocessor has no attribute 'to_rgb'"):
        pre.upstream_rgb()
