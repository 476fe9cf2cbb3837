"""Small, deterministic datasets of drawn shapes: mmdat's built-in ("embedded default") data.

Numpy and Pillow only. Every image is drawn from its own seeded random stream
(``seed``, dataset kind, split, index), so the first ``n`` images of a split do not
depend on how many are requested and two runs with the same arguments write the same
files. Each generator writes ``<root>/.mmdat_synthetic.json`` last; calling it again with
the same arguments returns at once, calling it with other arguments first removes what
the previous call wrote (and only that).

* :func:`make_shapes_classification` -- mmpretrain ``CustomDataset`` layout
  (``data_prefix='<split>'``, ``ann_file='meta/<split>.txt'``).
* :func:`make_shapes_coco` -- mmdet ``CocoDataset`` layout (boxes and polygon masks).
* :func:`make_shapes_ade20k` -- mmseg ``ADE20KDataset`` layout (``reduce_zero_label``).
* :func:`sample_shape_images` -- the classification images in memory (e.g. to train the
  tiny VQGAN on fresh images every step).

Shapes are drawn as polygons (circles with :data:`CIRCLE_VERTICES` vertices) with
anti-aliased edges on a random background (flat colour, gradient, stripes, checkerboard
or blotches) plus pixel noise; the shape colour always contrasts with the background.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import zlib
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw

__all__ = ['SHAPES', 'CLASSIFICATION_CLASSES', 'DETECTION_CLASSES', 'ADE20K_SPLIT_DIRS', 'MARKER_FILE',
           'make_shapes_classification', 'make_shapes_coco', 'make_shapes_ade20k', 'sample_shape_images',
           'shape_polygon']

GENERATOR_VERSION = 1  # bump when the drawing changes: existing data is then regenerated
MARKER_FILE = '.mmdat_synthetic.json'
SHAPES = ('circle', 'square', 'triangle', 'cross', 'star')
CLASSIFICATION_CLASSES = ('circle', 'square', 'triangle', 'cross')
DETECTION_CLASSES = ('circle', 'square', 'triangle')
ADE20K_SPLIT_DIRS = {'train': 'training', 'val': 'validation', 'training': 'training', 'validation': 'validation'}
CIRCLE_VERTICES = 24
SUPERSAMPLE = 4  # shapes are rasterised at this scale, then box-filtered (anti-aliasing)

PathLike = Union[str, os.PathLike]
PerSplit = Union[int, Mapping[str, int]]


# ----------------------------------------------------------------------------- drawing
def shape_polygon(shape: str, cx: float, cy: float, radius: float, angle: float = 0.0) -> np.ndarray:
    """Vertices (N, 2) of ``shape`` centred at (cx, cy); every vertex lies within ``radius`` of the centre.

    Coordinates are continuous image coordinates (pixel ``i`` covers ``[i, i + 1)``), as in COCO.
    """
    if shape == 'circle':
        t = np.arange(CIRCLE_VERTICES) * (2 * math.pi / CIRCLE_VERTICES)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == 'square':
        t = np.arange(4) * (math.pi / 2) + math.pi / 4
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == 'triangle':
        t = np.arange(3) * (2 * math.pi / 3) - math.pi / 2
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == 'cross':
        w, arm = 0.3, 1.0 / math.hypot(1.0, 0.3)  # half arm width and arm length, relative to the radius
        w *= arm
        quarter = np.array([[arm, -w], [arm, w], [w, w]])  # one arm end plus the inner corner after it
        pts = np.concatenate([quarter @ _rotation(k * math.pi / 2).T for k in range(4)])
    elif shape == 'star':
        t = np.arange(10) * (math.pi / 5) - math.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    else:
        raise ValueError(f'unknown shape {shape!r}; available: {", ".join(SHAPES)}')
    if shape != 'circle':
        pts = pts @ _rotation(angle).T
    return pts * radius + np.array([cx, cy])


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _rng(seed: int, kind: str, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(f'{kind}/{split}'.encode()), int(index)])


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Float (H, W, 3) background in [0, 255]: flat, gradient, stripes, checkerboard or blotches."""
    c1, c2 = _random_colour(rng), _random_colour(rng)
    kind = rng.integers(5)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    if kind == 0:
        t = np.zeros((height, width))
    elif kind == 1:  # linear gradient
        a = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(a) + yy * math.sin(a)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    elif kind == 2:  # soft stripes
        a, period = rng.uniform(0, math.pi), rng.uniform(4, 16)
        t = 0.5 + 0.5 * np.sin((xx * math.cos(a) + yy * math.sin(a)) * (2 * math.pi / period) + rng.uniform(0, 6.3))
    elif kind == 3:  # checkerboard
        cell = int(rng.integers(3, 9))
        t = ((xx // cell + yy // cell) % 2).astype(np.float64)
    else:  # blotches: bilinear upsampling of a coarse random grid
        grid = rng.uniform(0, 255, (int(rng.integers(2, 6)), int(rng.integers(2, 6)))).astype(np.uint8)
        t = np.asarray(Image.fromarray(grid).resize((width, height), Image.BILINEAR), np.float64) / 255
    if kind != 0:
        c2 = c1 + (c2 - c1) * rng.uniform(0.2, 0.6)  # keep textures moderate so that shapes stand out
    return c1 + t[..., None] * (c2 - c1)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray, min_dist: float = 110.0) -> np.ndarray:
    mean = background.reshape(-1, 3).mean(0)
    best, best_dist = None, -1.0
    for _ in range(30):
        colour = _random_colour(rng)
        dist = float(np.linalg.norm(colour - mean))
        if dist >= min_dist:
            return colour
        if dist > best_dist:
            best, best_dist = colour, dist
    return best


def _alpha(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage (H, W) in [0, 1] of a polygon given in continuous pixel coordinates."""
    s = SUPERSAMPLE
    canvas = Image.new('L', (width * s, height * s), 0)
    # A pixel k of the supersampled grid is centred on continuous coordinate (k + 0.5) / s.
    ImageDraw.Draw(canvas).polygon([(float(x) * s - 0.5, float(y) * s - 0.5) for x, y in polygon], fill=255)
    return np.asarray(canvas.resize((width, height), Image.BOX), np.float64) / 255


def _paint(image: np.ndarray, polygon: np.ndarray, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint a shape (flat colour with a faint shading) in place; returns its coverage."""
    h, w = image.shape[:2]
    alpha = _alpha(polygon, h, w)
    shade = rng.uniform(-25, 25) * np.linspace(-1, 1, h)[:, None, None]
    image *= 1 - alpha[..., None]
    image += alpha[..., None] * (colour + shade)
    return alpha


def _finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(0, 8)
    if sigma > 0:
        image = image + rng.normal(0, sigma, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _classification_image(rng: np.random.Generator, shape: str, size: int) -> np.ndarray:
    image = _background(rng, size, size)
    radius = size * rng.uniform(0.22, 0.45)
    cx, cy = (rng.uniform(radius, size - radius) for _ in range(2))
    polygon = shape_polygon(shape, cx, cy, radius, rng.uniform(0, 2 * math.pi))
    _paint(image, polygon, _contrasting_colour(rng, image), rng)
    return _finish(image, rng)


def _scene(rng: np.random.Generator, height: int, width: int, classes: Sequence[str], max_objects: int,
           min_radius: float = 6.0) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """An image with 1..max_objects non-overlapping shapes fully inside it, their polygons and a label map.

    The label map holds 0 for the background and ``1 + class index`` where a shape covers at
    least half of a pixel.
    """
    image = _background(rng, height, width)
    labels = np.zeros((height, width), np.uint8)
    max_radius = max(min_radius + 1, 0.3 * min(height, width))
    placed: list[tuple[float, float, float]] = []
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(classes)))
        for _attempt in range(30):
            radius = rng.uniform(min_radius, max_radius)
            cx, cy = rng.uniform(radius + 1, width - radius - 1), rng.uniform(radius + 1, height - radius - 1)
            if all(math.hypot(cx - px, cy - py) > radius + pr + 2 for px, py, pr in placed):
                break
        else:
            continue
        placed.append((cx, cy, radius))
        polygon = shape_polygon(classes[label], cx, cy, radius, rng.uniform(0, 2 * math.pi))
        alpha = _paint(image, polygon, _contrasting_colour(rng, image), rng)
        labels[alpha >= 0.5] = label + 1
        objects.append(dict(label=label, polygon=polygon))
    return _finish(image, rng), objects, labels


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    classes = tuple(classes)
    unknown = [c for c in classes if c not in SHAPES]
    if not classes or unknown or len(set(classes)) != len(classes):
        raise ValueError(f'classes must be distinct names among {SHAPES}, got {classes}')
    return classes


def _per_split(value: PerSplit, split: str, name: str) -> int:
    if isinstance(value, Mapping):
        if split not in value:
            raise ValueError(f'{name} has no entry for split {split!r}: {dict(value)}')
        value = value[split]
    if int(value) < 0:
        raise ValueError(f'{name} must be >= 0, got {value}')
    return int(value)


def _check_range(value: Sequence[int], name: str) -> tuple[int, int]:
    lo, hi = (int(v) for v in value)
    if not 16 <= lo <= hi:
        raise ValueError(f'{name} must be (min, max) with 16 <= min <= max, got {tuple(value)}')
    return lo, hi


# ----------------------------------------------------------------------------- bookkeeping
def _jsonable(obj):
    return json.loads(json.dumps(obj))


def _cached(root: Path, params: dict) -> Optional[dict]:
    """The stored description when ``root`` already holds data made with ``params``; else clean up."""
    marker = root / MARKER_FILE
    if not marker.is_file():
        return None
    try:
        stored = json.loads(marker.read_text())
    except (OSError, ValueError):
        stored = {}
    if stored.get('params') == params and all((root / p).exists() for p in stored.get('outputs', ())):
        return {'root': str(root), **stored['info']}
    for rel in stored.get('outputs', ()):  # written by an earlier call with other parameters
        if Path(rel).is_absolute() or '..' in Path(rel).parts:
            continue  # never delete outside root
        target = root / rel
        if target.is_dir():
            shutil.rmtree(target)
        elif target.is_file():
            target.unlink()
    marker.unlink()
    return None


def _write_marker(root: Path, params: dict, outputs: list[str], info: dict) -> dict:
    info = _jsonable({k: v for k, v in info.items() if k != 'root'})  # the marker does not depend on root
    tmp = root / (MARKER_FILE + '.tmp')
    tmp.write_text(json.dumps(dict(params=params, outputs=outputs, info=info), indent=1))
    tmp.replace(root / MARKER_FILE)
    return {'root': str(root), **info}


# ----------------------------------------------------------------------------- public API
def sample_shape_images(num: int, size: int = 32, classes: Sequence[str] = CLASSIFICATION_CLASSES,
                        seed: int = 0, split: str = 'sample', start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num`` classification images in memory: (uint8 array (num, size, size, 3) RGB, int64 labels (num,)).

    Image ``i`` (counted from ``start``) has class ``i % len(classes)`` and is drawn from the
    random stream (seed, split, i). With ``split='train'``/``'val'`` and the same ``seed``,
    ``classes`` and ``size`` these are the images :func:`make_shapes_classification` writes
    there: image ``i`` is ``<split>/<classes[i % C]>/<i // C>.png`` (C = ``len(classes)``).
    """
    classes = _check_classes(classes)
    images = np.empty((num, size, size, 3), np.uint8)
    labels = np.empty(num, np.int64)
    for j in range(num):
        i = start + j
        labels[j] = i % len(classes)
        images[j] = _classification_image(_rng(seed, 'classification', split, i), classes[labels[j]], size)
    return images, labels


def make_shapes_classification(root: PathLike, num_per_class: PerSplit = 12, size: int = 32,
                               classes: Sequence[str] = CLASSIFICATION_CLASSES, seed: int = 0,
                               splits: Sequence[str] = ('train', 'val')) -> dict:
    """Write a shape classification dataset for mmpretrain's ``CustomDataset``.

    Layout: ``root/<split>/<class>/<k>.png`` (RGB, ``size`` x ``size``) and
    ``root/meta/<split>.txt`` with lines ``"<class>/<k>.png <label>"``, label = index in
    ``classes``. Load a split with ``CustomDataset(data_root=root, data_prefix=split,
    ann_file=f'meta/{split}.txt', classes=classes)``.

    Args:
        num_per_class: images per class in each split (an int, or a dict split -> int).

    Returns:
        dict(kind, root, classes, size, splits={split: dict(data_prefix, ann_file,
        num_images, counts={class: n})}).
    """
    root = Path(root)
    classes = _check_classes(classes)
    if size < 8:
        raise ValueError(f'size must be >= 8, got {size}')
    params = _jsonable(dict(kind='classification', version=GENERATOR_VERSION, num_per_class=num_per_class,
                            size=size, classes=classes, seed=seed, splits=list(splits)))
    cached = _cached(root, params)
    if cached is not None:
        return cached
    (root / 'meta').mkdir(parents=True, exist_ok=True)
    info = dict(kind='classification', root=str(root), classes=classes, size=size, splits={})
    outputs = ['meta']
    for split in splits:
        n = _per_split(num_per_class, split, 'num_per_class')
        lines = []
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                rng = _rng(seed, 'classification', split, k * len(classes) + label)
                Image.fromarray(_classification_image(rng, name, size)).save(root / split / name / f'{k}.png')
                lines.append(f'{name}/{k}.png {label}')
        (root / 'meta' / f'{split}.txt').write_text(''.join(ln + '\n' for ln in lines))
        outputs += [split, f'meta/{split}.txt']
        info['splits'][split] = dict(data_prefix=split, ann_file=f'meta/{split}.txt', num_images=len(lines),
                                     counts={name: n for name in classes})
    return _write_marker(root, params, outputs, info)


def make_shapes_coco(root: PathLike, num_images: PerSplit = 24, height_range: Sequence[int] = (48, 80),
                     width_range: Sequence[int] = (64, 96), max_objects: int = 3,
                     classes: Sequence[str] = DETECTION_CLASSES, seed: int = 0,
                     splits: Sequence[str] = ('train', 'val')) -> dict:
    """Write a shape detection / instance segmentation dataset in COCO format for mmdet's ``CocoDataset``.

    Layout: ``root/<split>/<i>.png`` (RGB, height and width drawn uniformly from the ranges)
    and ``root/annotations/instances_<split>.json``. Each image has 1..``max_objects``
    non-overlapping shapes lying fully inside it; each annotation has ``bbox`` [x, y, w, h]
    (extent of the polygon), ``area`` (polygon area), ``iscrowd`` 0 and ``segmentation``
    [[x1, y1, x2, y2, ...]]. Category ids are 1..len(classes), image and annotation ids
    start at 1. Load with ``CocoDataset(data_root=root, ann_file=f'annotations/instances_{split}.json',
    data_prefix=dict(img=f'{split}/'), metainfo=dict(classes=classes))``.

    Returns:
        dict(kind, root, classes, splits={split: dict(data_prefix, ann_file, num_images,
        num_instances, counts={class: n})}).
    """
    root = Path(root)
    classes = _check_classes(classes)
    height_range, width_range = _check_range(height_range, 'height_range'), _check_range(width_range, 'width_range')
    if max_objects < 1:
        raise ValueError(f'max_objects must be >= 1, got {max_objects}')
    params = _jsonable(dict(kind='coco', version=GENERATOR_VERSION, num_images=num_images, height_range=height_range,
                            width_range=width_range, max_objects=max_objects, classes=classes, seed=seed,
                            splits=list(splits)))
    cached = _cached(root, params)
    if cached is not None:
        return cached
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(classes)]
    info = dict(kind='coco', root=str(root), classes=classes, splits={})
    outputs = []
    for split in splits:
        (root / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        counts = {name: 0 for name in classes}
        for i in range(_per_split(num_images, split, 'num_images')):
            rng = _rng(seed, 'coco', split, i)
            height, width = int(rng.integers(height_range[0], height_range[1] + 1)), \
                int(rng.integers(width_range[0], width_range[1] + 1))
            image, objects, _ = _scene(rng, height, width, classes, max_objects)
            file_name = f'{i}.png'
            Image.fromarray(image).save(root / split / file_name)
            images.append(dict(id=i + 1, file_name=file_name, height=height, width=width))
            for obj in objects:
                poly = np.round(obj['polygon'], 2)
                x0, y0 = poly.min(0)
                x1, y1 = poly.max(0)
                area = 0.5 * abs(float(np.dot(poly[:, 0], np.roll(poly[:, 1], -1))
                                       - np.dot(poly[:, 1], np.roll(poly[:, 0], -1))))
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=i + 1, category_id=obj['label'] + 1,
                    bbox=[round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
                          round(float(y1 - y0), 2)],
                    area=round(area, 2), iscrowd=0, segmentation=[[float(v) for v in poly.reshape(-1)]]))
                counts[classes[obj['label']]] += 1
        ann_file = f'annotations/instances_{split}.json'
        coco = dict(info=dict(description=f'mmdat synthetic shapes ({split})', version=str(GENERATOR_VERSION)),
                    licenses=[], images=images, annotations=annotations, categories=categories)
        (root / ann_file).write_text(json.dumps(coco))
        outputs += [split, ann_file]
        info['splits'][split] = dict(data_prefix=dict(img=f'{split}/'), ann_file=ann_file, num_images=len(images),
                                     num_instances=len(annotations), counts=counts)
    return _write_marker(root, params, outputs, info)


def make_shapes_ade20k(root: PathLike, num_images: PerSplit = 24, height_range: Sequence[int] = (48, 80),
                       width_range: Sequence[int] = (48, 80), max_objects: int = 3,
                       classes: Sequence[str] = DETECTION_CLASSES, seed: int = 0,
                       splits: Sequence[str] = ('train', 'val')) -> dict:
    """Write a shape semantic segmentation dataset in mmseg's ``ADE20KDataset`` layout.

    Layout: ``root/images/<training|validation>/<i>.jpg`` (RGB) and
    ``root/annotations/<training|validation>/<i>.png`` (uint8 label map: 0 = background,
    ``1 + index in classes`` = shape). With ADE20K's ``reduce_zero_label=True`` the
    background becomes 255 (ignored) and shape ``c`` becomes label ``c`` (with ADE20K's
    default class names these are 'wall', 'building', 'sky', ...). Splits 'train'/'val'
    (or 'training'/'validation') go to 'training'/'validation'. Load with
    ``ADE20KDataset(data_root=root, data_prefix=dict(img_path='images/validation',
    seg_map_path='annotations/validation'))``.

    Returns:
        dict(kind, root, classes, label_values={class: value in the png}, splits={split:
        dict(data_prefix, num_images, pixel_counts={'background' and classes: n})}).
    """
    root = Path(root)
    classes = _check_classes(classes)
    height_range, width_range = _check_range(height_range, 'height_range'), _check_range(width_range, 'width_range')
    for split in splits:
        if split not in ADE20K_SPLIT_DIRS:
            raise ValueError(f'unknown ADE20K split {split!r}; use one of {sorted(ADE20K_SPLIT_DIRS)}')
    params = _jsonable(dict(kind='ade20k', version=GENERATOR_VERSION, num_images=num_images,
                            height_range=height_range, width_range=width_range, max_objects=max_objects,
                            classes=classes, seed=seed, splits=list(splits)))
    cached = _cached(root, params)
    if cached is not None:
        return cached
    info = dict(kind='ade20k', root=str(root), classes=classes,
                label_values={name: i + 1 for i, name in enumerate(classes)}, splits={})
    outputs = []
    for split in splits:
        sub = ADE20K_SPLIT_DIRS[split]
        img_dir, seg_dir = root / 'images' / sub, root / 'annotations' / sub
        img_dir.mkdir(parents=True, exist_ok=True)
        seg_dir.mkdir(parents=True, exist_ok=True)
        pixel_counts = np.zeros(len(classes) + 1, np.int64)
        n = _per_split(num_images, split, 'num_images')
        for i in range(n):
            rng = _rng(seed, 'ade20k', sub, i)
            height, width = int(rng.integers(height_range[0], height_range[1] + 1)), \
                int(rng.integers(width_range[0], width_range[1] + 1))
            image, _, labels = _scene(rng, height, width, classes, max_objects)
            Image.fromarray(image).save(img_dir / f'{i}.jpg', quality=95)
            Image.fromarray(labels).save(seg_dir / f'{i}.png')
            pixel_counts += np.bincount(labels.reshape(-1), minlength=len(classes) + 1)
        outputs += [f'images/{sub}', f'annotations/{sub}']
        info['splits'][split] = dict(
            data_prefix=dict(img_path=f'images/{sub}', seg_map_path=f'annotations/{sub}'), num_images=n,
            pixel_counts=dict(zip(('background',) + classes, (int(c) for c in pixel_counts))))
    return _write_marker(root, params, outputs, info)
