"""The upstream preprocessors' private attributes that DAT reads, in one place.

mmpretrain, mmdet and mmseg keep the channel order and normalisation in private attributes
(``to_rgb``, ``_channel_conversion``, ``channel_conversion``, ``_enable_normalize``, ``mean``, ``std``).
Each DAT subclass names the ones of its family; a release that renames one fails loudly here
(tests/test_upstream_flags.py checks every family against the installed packages).
"""
from __future__ import annotations

from typing import Any, Optional

from torch import Tensor


def upstream_attribute(preprocessor: Any, name: str) -> Any:
    """A private attribute of the upstream preprocessor, with a loud error if a release renamed it."""
    try:
        return getattr(preprocessor, name)
    except AttributeError:
        upstream = type(preprocessor).__mro__[2]
        raise AttributeError(
            f'{type(preprocessor).__name__}: the upstream {upstream.__module__}.{upstream.__name__} has '
            f'no attribute {name!r} any more (renamed in this release?); update '
            f'{type(preprocessor).__module__} to read its channel order / normalisation') from None


def normalization_of(preprocessor: Any) -> Optional[tuple[Tensor, Tensor]]:
    """(mean, std) of an mmengine ImgDataPreprocessor-style preprocessor, or None."""
    if not upstream_attribute(preprocessor, '_enable_normalize'):
        return None
    return upstream_attribute(preprocessor, 'mean'), upstream_attribute(preprocessor, 'std')
