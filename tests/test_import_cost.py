"""``import mmdat`` imports no task package, no demo/benchmark code and no heavy optional dependency,
yet every name it registers builds; one task family works without the others' packages.

Each check runs in a fresh interpreter (this process has imported everything already). The import
time itself is measured in the README, not here.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, TINY_VQGAN

#: modules that ``import mmdat`` must not import
HEAVY = ('mmdet', 'mmseg', 'mmpretrain', 'mmcv', 'mmdat.apis', 'mmdat.apis.demo', 'mmdat.apis.benchmark',
         'imagecorruptions', 'matplotlib', 'scipy', 'skimage')

#: arguments that build each registered name (every row of mmdat.registry.REGISTERED has one)
BUILD_ARGS = {
    'VQGAN': dict(TINY_VQGAN),
    'VQGANPreset': dict(preset='tiny-shapes'),
    'VQGANAutoencoder': dict(vqgan=dict(type='VQGAN', **TINY_VQGAN)),
    'VQGANDataPreprocessor': {},
    'DATClsDataPreprocessor': dict(mean=[0, 0, 0], std=[1, 1, 1]),
    'DATDetDataPreprocessor': dict(mean=[0, 0, 0], std=[1, 1, 1]),
    'DATSegDataPreProcessor': dict(mean=[0, 0, 0], std=[1, 1, 1]),
    'VQGANOptimWrapperConstructor': dict(optim_wrapper_cfg={part: dict(optimizer=dict(type='Adam', lr=1e-4))
                                                            for part in ('generator', 'discriminator')}),
    'DATHook': dict(vqgan=dict(type='VQGAN', **TINY_VQGAN)),
    'KeepLogitsHook': {},
    'RankAverageBuffersHook': {},
    'VQGANExportHook': {},
    'VQGANVisualizationHook': {},
    # a runner needs a whole config, a loop a runner: these classes are resolved, not built
    'CheckpointSafeRunner': None,
    **{name: None for name in ('RobustnessTestLoop', 'CorruptionTestLoop', 'OODTestLoop', 'RobustnessValLoop')},
    'ShapeImageDataset': dict(num_images=2),
    **{name: dict(data_root='/nonexistent', lazy_init=True)
       for name in ('ImageNetR', 'ImageNetA', 'ImageNetSketch', 'ImageNetV2', 'StylizedImageNet')},
    'ImageCorruption': dict(corruption='fog', severity=1),
    'ImageNetCCorruption': dict(corruption='fog', severity=1),
    'SubsetAccuracy': {},
    'VQGANReconstructionMetric': {},
}


def run_python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (this checkout on the path, outside it as cwd); the JSON it
    prints last."""
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd='/', capture_output=True, text=True,
                          timeout=600, env={**os.environ, 'PYTHONPATH': f'{REPO}:{REPO / "tests"}',
                                            'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def after_import() -> dict:
    """In a fresh interpreter: what ``import mmdat`` imported, then every registered name built."""
    return run_python(f"""
        import json, sys, warnings
        import mmdat
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        mmdat_modules = sorted(m for m in sys.modules if m.startswith('mmdat'))
        from mmdat.registry import REGISTERED, DeferredModule
        built = {{}}
        warnings.simplefilter('ignore', DeprecationWarning)
        for registry, names, module, requires in REGISTERED:
            args = {BUILD_ARGS!r}.get(names[0], 'missing')
            if args is None:
                cls = registry.get(names[0])
                cls = cls.resolve() if isinstance(cls, DeferredModule) else cls
                kind, where = cls.__name__, cls.__module__
            elif args != 'missing':
                obj = registry.build(dict(type=names[0], **args))
                kind, where = type(obj).__name__, type(obj).__module__
            after = [registry.get(n) for n in names]
            built[names[0]] = dict(
                args=args != 'missing', type=kind, module=where,
                resolved=all(not isinstance(a, DeferredModule) for a in after),
                same=all(a is after[0] for a in after))
        print(json.dumps(dict(heavy=heavy, mmdat_modules=mmdat_modules, built=built)))
        """)


def test_import_mmdat_imports_no_task_package_and_no_tool_code(after_import):
    assert after_import['heavy'] == []
    # only the registry table itself: every module is imported when one of its pieces is built
    assert after_import['mmdat_modules'] == ['mmdat', 'mmdat.registry', 'mmdat.version']


def test_every_registered_name_builds_after_import_mmdat_only(after_import):
    built = after_import['built']
    assert set(built) == {names[0] for _, names, _, _ in __import__('mmdat.registry').registry.REGISTERED}
    assert [name for name, record in built.items() if not record['args']] == []  # BUILD_ARGS is complete
    for name, record in built.items():
        assert record['resolved'] and record['same'], (name, record)
        assert record['module'].startswith('mmdat.'), (name, record)
    assert built['VQGAN']['type'] == built['VQGANPreset']['type'] == 'VQGAN'
    for name in ('DATClsDataPreprocessor', 'DATDetDataPreprocessor', 'DATSegDataPreProcessor', 'DATHook',
                 'SubsetAccuracy', 'ImageNetR', 'ImageCorruption', 'ShapeImageDataset', 'CheckpointSafeRunner',
                 'CorruptionTestLoop', 'RobustnessValLoop'):
        assert built[name]['type'] == name


def test_registered_table_matches_what_the_modules_register():
    """Every class or builder an mmdat module registers is in mmdat.registry.REGISTERED (else
    ``import mmdat`` would not register it), under the same names, and the other way round."""
    found = run_python("""
        import importlib, json, pkgutil
        import mmdat
        from mmdat.registry import REGISTERED
        for info in pkgutil.walk_packages(mmdat.__path__, 'mmdat.'):
            importlib.import_module(info.name)
        registries = {id(r): r for r, *_ in REGISTERED}
        from mmdat.registry import LOOPS
        registries[id(LOOPS)] = LOOPS
        registered = sorted([r.name, name, obj.__module__] for r in registries.values()
                            for name, obj in r.module_dict.items()
                            if (getattr(obj, '__module__', None) or '').startswith('mmdat.'))
        table = sorted([r.name, name, module] for r, names, module, _ in REGISTERED for name in names)
        print(json.dumps(dict(registered=registered, table=table)))
        """)
    assert found['registered'] == found['table']


def test_robustness_modules_import_their_heavy_dependencies_where_used():
    """Every module of mmdat.robustness (the robustness loops' building blocks), the corruption
    functions and the robustness aggregates import imagecorruptions, mmcv, matplotlib and the task
    packages inside the functions that use them."""
    heavy = [m for m in HEAVY if m != 'mmdat.apis']
    loaded = run_python(f"""
        import importlib, json, pkgutil, sys
        import mmdat.robustness, mmdat.datasets.transforms.corruption, mmdat.evaluation
        for info in pkgutil.iter_modules(mmdat.robustness.__path__, 'mmdat.robustness.'):
            importlib.import_module(info.name)
        print(json.dumps(dict(heavy=[m for m in {heavy!r} if m in sys.modules])))
        """)
    assert loaded['heavy'] == []


HIDE = """
    import importlib.abc, sys
    class Hidden(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition('.')[0] in {hidden!r}:
                raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)
    sys.meta_path.insert(0, Hidden())
"""


@pytest.mark.parametrize('family, scope, preprocessor, others', [
    ('det', 'mmdet', 'DATDetDataPreprocessor', {'mmpretrain': 'cls', 'mmseg': 'seg'}),
    ('cls', 'mmpretrain', 'DATClsDataPreprocessor', {'mmdet': 'det', 'mmseg': 'seg'}),
])
def test_one_family_works_without_the_other_packages(family, scope, preprocessor, others):
    found = run_python(HIDE.format(hidden=tuple(others)) + f"""
    import json
    import mmdat
    from mmengine.registry import DefaultScope
    from mmdat.registry import HOOKS, MODELS
    with DefaultScope.overwrite_default_scope({scope!r}):
        pre = MODELS.build(dict(type={preprocessor!r}, mean=[0, 0, 0], std=[1, 1, 1]))
        hook = HOOKS.build(dict(type='DATHook', vqgan=dict(type='VQGAN', preset='tiny-shapes')))
    errors = {{}}
    for name in ('DATClsDataPreprocessor', 'DATDetDataPreprocessor', 'DATSegDataPreProcessor'):
        if name != {preprocessor!r}:
            try:
                MODELS.build(dict(type=name))
            except ImportError as err:
                errors[name] = str(err)
    print(json.dumps(dict(pre=type(pre).__name__, hook=type(hook).__name__, errors=errors,
                          loaded=[m for m in {tuple(others)!r} if m in sys.modules])))
    """)
    assert found['pre'] == preprocessor and found['hook'] == 'DATHook'
    assert found['loaded'] == []
    assert len(found['errors']) == 2
    for package, extra in others.items():
        assert any(f"needs {package}, which is not installed: pip install 'mmdat[{extra}]'" in message
                   for message in found['errors'].values()), found['errors']


def test_vqgan_and_dat_hook_need_no_mmcv():
    found = run_python(HIDE.format(hidden=('mmcv', 'mmdet', 'mmseg', 'mmpretrain')) + """
    import json
    import mmdat
    from mmdat.registry import HOOKS, TRANSFORMS
    hook = HOOKS.build(dict(type='DATHook', vqgan=dict(type='VQGAN', preset='tiny-shapes')))
    from mmdat.datasets.transforms import corrupt_image, resolve_corruptions
    try:
        TRANSFORMS.build(dict(type='ImageCorruption', corruption='fog', severity=1))
        error = None
    except ImportError as err:
        error = str(err)
    print(json.dumps(dict(hook=type(hook).__name__, error=error, groups=resolve_corruptions(['noise']))))
    """)
    assert found['hook'] == 'DATHook'
    assert found['groups'] == ['gaussian_noise', 'shot_noise', 'impulse_noise']
    assert "ImageCorruption needs mmcv, which is not installed: pip install 'mmdat[robustness]'" in found['error']
