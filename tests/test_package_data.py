"""mmdat installed from a wheel reads nothing of the source checkout: the demo finds and loads every
config it uses from the package data (``mmdat/.mim/configs``), from a directory outside the checkout."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

from conftest import REPO


def _run(args, **kwargs) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_wheel_ships_the_configs_the_demo_loads(tmp_path):
    src = tmp_path / 'src'  # a copy: pip builds in the source tree (build/, *.egg-info)
    src.mkdir()
    for name in ('setup.py', 'README.md', 'MANIFEST.in'):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns('__pycache__', '.mim', '*.egg-info')
    for name in ('requirements', 'configs', 'mmdat'):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index', '-q', src,
          '-w', tmp_path / 'wheel'])
    wheel, = (tmp_path / 'wheel').glob('mmdat-*.whl')
    site = tmp_path / 'site'
    _run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index', '-q', '--target', site, wheel])

    code = textwrap.dedent("""
        import json, warnings
        warnings.simplefilter('ignore')
        import mmdat
        from mmengine.config import Config
        from mmdat.apis.demo import DEMO_TASKS, demo_config
        from mmdat.utils.configs import config_file, configs_root
        loaded = {}
        for task, spec in DEMO_TASKS.items():
            cfg = demo_config(task, 'work', 'data', dat=True)
            loaded[spec.config] = cfg.filename
            if spec.pretrain is not None:
                loaded[spec.pretrain.config] = Config.fromfile(str(config_file(spec.pretrain.config))).filename
        print(json.dumps(dict(package=mmdat.__file__, root=str(configs_root()), loaded=loaded)))
        """)
    env = {**os.environ, 'PYTHONPATH': str(site), 'OMP_NUM_THREADS': '1'}  # the venv's packages, no checkout
    found = json.loads(_run([sys.executable, '-c', code], cwd=tmp_path, env=env).strip().splitlines()[-1])
    assert found['package'] == str(site / 'mmdat' / '__init__.py')
    assert found['root'] == str(site / 'mmdat' / '.mim' / 'configs')
    assert len(found['loaded']) == 4  # cls, det (+ its backbone pretraining), seg
    for name, path in found['loaded'].items():
        assert path == str(site / 'mmdat' / '.mim' / name), (name, path)  # name: 'configs/demo/...'
        assert (REPO / name).read_text() == open(path).read()
