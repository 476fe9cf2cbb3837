"""mmdat's pieces resolve from the mmdet, mmseg and mmpretrain scopes (custom_imports=['mmdat'])."""
import importlib

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from conftest import REPO, TINY_VQGAN

SCOPES = {  # scope: (registry module, DAT preprocessor of that task family)
    'mmpretrain': ('mmpretrain.registry', 'DATClsDataPreprocessor'),
    'mmdet': ('mmdet.registry', 'DATDetDataPreprocessor'),
    'mmseg': ('mmseg.registry', 'DATSegDataPreProcessor'),
}
# the other capitalisation of each: mmseg writes 'PreProcessor', mmdet and mmpretrain 'Preprocessor'
NEAR_MISSES = {'mmpretrain': 'DATClsDataPreProcessor', 'mmdet': 'DATDetDataPreProcessor',
               'mmseg': 'DATSegDataPreprocessor'}


@pytest.mark.parametrize('scope', sorted(SCOPES))
def test_build_under_default_scope(scope, tiny_vqgan_checkpoint):
    registry_module, preprocessor = SCOPES[scope]
    registry = importlib.import_module(registry_module)
    with DefaultScope.overwrite_default_scope(scope):
        vqgan = registry.MODELS.build(dict(type='VQGAN', **TINY_VQGAN, checkpoint=tiny_vqgan_checkpoint))
        assert type(vqgan).__module__ == 'mmdat.models.vqgan'
        pre = registry.MODELS.build(dict(type=preprocessor, mean=[0, 0, 0], std=[1, 1, 1]))
        assert type(pre).__name__ == preprocessor
        hook = registry.HOOKS.build(dict(type='DATHook', vqgan=dict(type='VQGAN', **TINY_VQGAN)))
        assert type(hook).__name__ == 'DATHook'
        preset = registry.MODELS.build(dict(type='VQGAN', preset='tiny-shapes', checkpoint='default'))
        assert preset.downsample_factor >= 1
        with pytest.warns(DeprecationWarning, match='VQGANPreset'):
            old = registry.MODELS.build(dict(type='VQGANPreset', preset='tiny-shapes'))
        assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), preset.state_dict().values()))


@pytest.mark.parametrize('scope', sorted(SCOPES))
def test_near_miss_preprocessor_spelling_builds_the_same_class(scope):
    registry_module, preprocessor = SCOPES[scope]
    registry = importlib.import_module(registry_module)
    with DefaultScope.overwrite_default_scope(scope):
        pre = registry.MODELS.build(dict(type=NEAR_MISSES[scope], mean=[0, 0, 0], std=[1, 1, 1]))
    assert type(pre).__name__ == preprocessor


def test_readme_names_the_registered_preprocessors():
    import re
    from mmdat.registry import MODELS
    named = set(re.findall(r'\bDAT\w+DataPre[Pp]rocessor\b', (REPO / 'README.md').read_text()))
    assert {preprocessor for _, preprocessor in SCOPES.values()} <= named
    assert all(MODELS.get(name) is not None for name in named), named


@pytest.mark.parametrize('config', sorted((REPO / 'configs' / 'dat').glob('*.py')), ids=lambda p: p.name)
def test_task_configs_parse_and_state_dat(config):
    cfg = Config.fromfile(str(config))
    pre = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor')
    if cfg.default_scope == 'mmpretrain':
        pre = cfg.data_preprocessor
    assert pre['type'].startswith('DAT')
    assert pre['dat']['eps'] == 0.1 and pre['dat']['step_size'] == 0.1
    assert pre['dat']['random_start_prob'] == 0.8
    hooks = [h for h in cfg.custom_hooks if h['type'] == 'DATHook']
    assert len(hooks) == 1 and hooks[0]['vqgan']['preset'] == 'openimages-f8-16384'
    assert 'mmdat' in cfg.custom_imports['imports']
    # every config states the number it is measured against
    assert any(tok in config.read_text() for tok in ('mIoU', 'AP', 'top-1'))


def test_metafile_lists_every_dat_config():
    import yaml
    meta = yaml.safe_load((REPO / 'configs/dat/metafile.yml').read_text())
    listed = {m['Config'] for m in meta['Models']}
    assert all(m['In Collection'] == 'DAT' for m in meta['Models'])
    assert listed == {f'configs/dat/{p.name}' for p in (REPO / 'configs/dat').glob('*.py')}
    assert (REPO / meta['Collections'][0]['README']).is_file()
