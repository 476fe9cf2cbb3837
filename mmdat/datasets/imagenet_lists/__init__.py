"""ImageNet class lists shipped with mmdat (package data; provenance in ``SOURCES.txt``).

- ``imagenet_1k_wnids.txt``: the 1000 ILSVRC-2012 wnids, sorted; line ``i`` is class ``i``.
- ``imagenet_{r,a}_200_wnids.txt`` / ``imagenet_{r,a}_200_indices.txt``: the 200 classes of
  ImageNet-R / ImageNet-A as sorted wnids and as their (ascending) ImageNet-1k indices.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

__all__ = ['SUBSETS', 'imagenet_1k_wnids', 'subset_wnids', 'subset_indices']

LIST_DIR = Path(__file__).resolve().parent
SUBSETS = ('imagenet-r', 'imagenet-a')  # the 200-class benchmarks


def _read_lines(name: str) -> tuple[str, ...]:
    path = LIST_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f'mmdat class list {path} is missing: reinstall mmdat (package data)')
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


def _check_subset(subset: str) -> str:
    if subset not in SUBSETS:
        raise ValueError(f'unknown ImageNet class subset {subset!r}; known: {", ".join(SUBSETS)}')
    return subset.replace('imagenet-', '')


@lru_cache(maxsize=None)
def imagenet_1k_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in class-index order (sorted)."""
    wnids = _read_lines('imagenet_1k_wnids.txt')
    if len(wnids) != 1000 or len(set(wnids)) != 1000 or list(wnids) != sorted(wnids):
        raise RuntimeError('mmdat/datasets/imagenet_lists/imagenet_1k_wnids.txt is corrupted')
    return wnids


@lru_cache(maxsize=None)
def subset_wnids(subset: str) -> tuple[str, ...]:
    """The 200 sorted wnids of ``subset`` (``'imagenet-r'`` or ``'imagenet-a'``)."""
    return _read_lines(f'imagenet_{_check_subset(subset)}_200_wnids.txt')


@lru_cache(maxsize=None)
def subset_indices(subset: str) -> tuple[int, ...]:
    """The ImageNet-1k indices of the 200 classes of ``subset``, ascending.

    Position ``i`` in this list is label ``i`` of the subset dataset.
    """
    return tuple(int(v) for v in _read_lines(f'imagenet_{_check_subset(subset)}_200_indices.txt'))
