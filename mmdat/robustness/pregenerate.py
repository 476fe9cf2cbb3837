"""Corrupted copies of a dataset on disk, for evaluating many checkpoints without re-corrupting.

``make_corrupted_copy(cfg, out_root, ...)`` writes ``<out_root>/<corruption>/<severity>/`` as a
mirror of the test set's data root: every image of the test set decoded by the config's own
image-loading transform (its backend, colour type, ...), then corrupted exactly as
:class:`~mmdat.datasets.transforms.ImageCorruption` does it on the fly (same dataset index, same
seed, hence the same pixels up to the file format's compression), and the annotation files the
dataset reads (its ``ann_file``, segmentation maps) linked or copied unchanged. ``tools/test.py
--corruption-root <out_root>`` then reads each folder with the config's own dataset and pipeline.

Work is spread over worker processes; the result does not depend on their number. Images that
exist already are kept, so an interrupted run continues where it stopped; a folder is complete
when its ``.mmdat_corrupted.json`` marker exists.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import os.path as osp
import shutil
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from mmengine.config import Config
from mmengine.logging import print_log

from mmdat.datasets.transforms.corruption import resolve_corruptions
from .corruption import _loader_cfg, find_unfit_images, insert_corruption

__all__ = ['make_corrupted_copy', 'MARKER']

MARKER = '.mmdat_corrupted.json'


_LOADER = None  # the config's image-loading transform, built before the workers fork


def _build_dataset(cfg: Config, split: str):
    """(the dataset without its pipeline, its image-loading transform built as the config says)."""
    from mmengine.registry import DATASETS, TRANSFORMS, init_default_scope
    key = f'{split}_dataloader'
    if not cfg.get(key):
        raise ValueError(f'the config has no {key}')
    if cfg.get('default_scope'):
        init_default_scope(cfg.default_scope)
    if 'pipeline' not in cfg[key]['dataset']:
        raise ValueError(f'{key}.dataset has no pipeline: dataset wrappers are not supported here')
    dataset_cfg = cfg[key]['dataset']
    dataset_cfg = dataset_cfg.to_dict() if hasattr(dataset_cfg, 'to_dict') else dict(dataset_cfg)
    insert_corruption(dataset_cfg, 'gaussian_noise', 1)  # no loader, or a multi-channel one: refused here
    loader_cfg = _loader_cfg(dataset_cfg)
    if cfg.get('default_scope'):
        loader = TRANSFORMS.build(loader_cfg)
    else:
        from mmcv.transforms import TRANSFORMS as MMCV_TRANSFORMS
        loader = MMCV_TRANSFORMS.build(loader_cfg)
    return DATASETS.build(dict(dataset_cfg, pipeline=[])), loader, loader_cfg


def _inside(path: str, root: str) -> Optional[str]:
    path, root = osp.abspath(path), osp.abspath(root)
    return osp.relpath(path, root) if path.startswith(root + os.sep) else None


def _link_or_copy(src: str, dst: Path) -> None:
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _corrupt_one(job: tuple) -> None:
    """Worker: read with the config's loader (as the pipeline does), corrupt, write atomically."""
    import cv2
    import mmcv

    from mmdat.datasets.transforms.corruption_transforms import ImageCorruption
    index, src, dst, corruption, severity, seed, legacy_bgr, jpeg_quality = job
    if osp.exists(dst):
        return
    loaded = _LOADER(dict(img_path=src))
    if loaded is None or loaded.get('img') is None:
        raise ValueError(f'cannot read image {src}')
    out = ImageCorruption(corruption, severity, seed=seed, legacy_bgr=legacy_bgr)(
        dict(img=loaded['img'], sample_idx=index))['img']
    out = out.astype(np.uint8)  # exact: ImageCorruption accepts float images only when they hold 0..255 integers
    ext = osp.splitext(dst)[1].lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if ext in ('.jpg', '.jpeg') else None
    tmp = f'{osp.dirname(dst)}/.{os.getpid()}.{osp.basename(dst)}'  # same extension: cv2 picks the codec
    if not mmcv.imwrite(out, tmp, params=params, auto_mkdir=True):
        raise OSError(f'cannot write {dst}')
    os.replace(tmp, dst)


def make_corrupted_copy(cfg: Union[Config, str], out_root: Union[str, os.PathLike], corruptions: Sequence[str],
                        severities: Sequence[int] = (1, 2, 3, 4, 5), *, seed: int = 0, legacy_bgr: bool = False,
                        workers: int = 1, jpeg_quality: int = 95, split: str = 'test') -> dict:
    """Write corrupted copies of a config's test (or val) set.

    Args:
        cfg (Config | str): the config (or its path) whose dataloader's dataset is copied.
        out_root (str | PathLike): output root; ``<out_root>/<corruption>/<severity>/`` mirrors
            the dataset's ``data_root``.
        corruptions (Sequence[str]): corruption or group names (see ``resolve_corruptions``).
        severities (Sequence[int]): severities 1..5. Defaults to all five.
        seed (int): corruption seed, as ``tools/test.py --seed``. Defaults to 0.
        legacy_bgr (bool): corrupt the BGR array as mmdet does. Defaults to False.
        workers (int): worker processes. Defaults to 1 (in this process).
        jpeg_quality (int): quality of JPEG outputs (other formats keep their codec's default,
            lossless for PNG). Defaults to 95.
        split (str): ``'test'`` or ``'val'``: which dataloader's dataset. Defaults to ``'test'``.

    Returns:
        dict: ``cells``, ``images`` (per cell), ``written`` (new image files), ``seconds``.
    """
    if split not in ('test', 'val'):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    severities = sorted({int(s) for s in severities})
    if not severities or any(not 1 <= s <= 5 for s in severities):
        raise ValueError(f'severities of a corrupted copy must be in 1..5, got {severities}')
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f'jpeg_quality must be in 1..100, got {jpeg_quality}')
    corruptions = resolve_corruptions(corruptions)
    cfg = Config.fromfile(cfg) if isinstance(cfg, (str, os.PathLike)) else cfg
    global _LOADER
    dataset, _LOADER, loader_cfg = _build_dataset(cfg, split)
    data_root = getattr(dataset, 'data_root', None) or cfg[f'{split}_dataloader']['dataset'].get('data_root')
    if not data_root:
        raise ValueError('the dataset has no data_root: the copy mirrors the data root')
    images, extras = [], set()
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        rel = _inside(info['img_path'], data_root)
        if rel is None:
            raise ValueError(f'image {info["img_path"]} lies outside the data root {data_root}')
        images.append((info.get('sample_idx', index), info['img_path'], rel))
        for key, value in info.items():
            if key != 'img_path' and key.endswith('_path') and isinstance(value, str) and osp.isfile(value):
                extras.add(value)
    ann_file = getattr(dataset, 'ann_file', None)
    if ann_file and osp.isfile(ann_file):
        extras.add(ann_file)
    outside = [p for p in extras if _inside(p, data_root) is None]
    if outside:
        print_log(f'make_corrupted: {len(outside)} annotation file(s) outside the data root are read '
                  f'from their place (e.g. {outside[0]})', logger='current')
    extras = sorted(p for p in extras if p not in outside)

    problems, _ = find_unfit_images(dataset, loader_cfg)
    if problems:
        raise ValueError(f'{len(problems)} image(s) cannot be corrupted at their original resolution: '
                         + '; '.join(problems[:10]) + (' ...' if len(problems) > 10 else ''))

    start, written = time.perf_counter(), 0
    out_root = Path(out_root)
    if workers > 1:
        # OpenCV's thread pool does not survive fork (a forked worker can hang in its first cv2 call):
        # run cv2 sequentially, as mmengine's runners do (env_cfg opencv_num_threads=0)
        import cv2
        cv2.setNumThreads(0)
    pool = multiprocessing.get_context('fork').Pool(workers) if workers > 1 else None
    try:
        for corruption in corruptions:
            for severity in severities:
                folder = out_root / corruption / str(severity)
                t0 = time.perf_counter()
                jobs = [(index, src, str(folder / rel), corruption, severity, seed, legacy_bgr, jpeg_quality)
                        for index, src, rel in images]
                todo = [j for j in jobs if not osp.exists(j[2])]
                if pool is None:
                    for job in todo:
                        _corrupt_one(job)
                else:
                    for _ in pool.imap_unordered(_corrupt_one, todo, chunksize=max(1, len(todo) // (8 * workers))):
                        pass
                for path in extras:
                    _link_or_copy(path, folder / _inside(path, data_root))
                (folder / MARKER).write_text(json.dumps(dict(
                    corruption=corruption, severity=severity, seed=seed, legacy_bgr=legacy_bgr,
                    loader=loader_cfg, jpeg_quality=jpeg_quality, images=len(images),
                    source=str(osp.abspath(data_root)))))
                written += len(todo)
                print_log(f'make_corrupted: {folder} ({len(todo)} new of {len(images)} images, '
                          f'{time.perf_counter() - t0:.1f} s)', logger='current')
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return dict(cells=len(corruptions) * len(severities), images=len(images), written=written,
                seconds=round(time.perf_counter() - start, 2))
