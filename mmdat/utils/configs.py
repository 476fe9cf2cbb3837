"""Where mmdat's own configs (the repository's ``configs/`` tree) are, installed or not.

A wheel ships the tree as package data in ``mmdat/.mim/configs`` (``setup.py`` copies it there, where
OpenMMLab's ``mim`` keeps a package's configs). A source checkout -- on ``PYTHONPATH`` or installed
editable -- has it next to the package. Library code reads configs only through :func:`config_file`,
never relative to the current directory. (mmengine 0.10's ``package::path`` config prefix accepts only
the OpenMMLab packages it lists, so it cannot name mmdat's configs.)
"""
from __future__ import annotations

from pathlib import Path

__all__ = ['PACKAGE_DIR', 'configs_root', 'config_file']

PACKAGE_DIR = Path(__file__).resolve().parents[1]
_CANDIDATES = (PACKAGE_DIR / '.mim' / 'configs',  # a wheel (package data)
               PACKAGE_DIR.parent / 'configs')  # a source checkout, editable install


def configs_root() -> Path:
    """The root of mmdat's config tree (``_base_/``, ``dat/``, ``demo/``, ``vqgan/``)."""
    for root in _CANDIDATES:
        if (root / 'demo').is_dir():
            return root
    raise FileNotFoundError('mmdat\'s configs are neither installed as package data ('
                            f'{_CANDIDATES[0]}) nor in a source checkout ({_CANDIDATES[1]}): reinstall mmdat')


def config_file(name: str) -> Path:
    """The file of one of mmdat's configs.

    Args:
        name: relative to the config tree (``'demo/resnet-tiny_dat_shapes.py'``) or as written in the
            repository (``'configs/demo/...'``).

    Raises:
        FileNotFoundError: no such config.
    """
    path = configs_root() / name.removeprefix('configs/')
    if not path.is_file():
        raise FileNotFoundError(f'mmdat has no config {name!r} (looked for {path})')
    return path
