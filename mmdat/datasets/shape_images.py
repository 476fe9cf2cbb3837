"""``ShapeImageDataset``: the built-in shape images, images only (e.g. to train a VQGAN)."""
from __future__ import annotations

from typing import Optional, Sequence

from mmengine.dataset import BaseDataset

from mmdat.registry import DATASETS
from .shapes import CLASSIFICATION_CLASSES, sample_shape_images

__all__ = ['ShapeImageDataset']


@DATASETS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class ShapeImageDataset(BaseDataset):
    """The first ``num_images`` images of a :func:`~mmdat.datasets.sample_shape_images` stream.

    Images are drawn when requested (a fraction of a millisecond each), so a large
    ``num_images`` costs no memory. Each item is ``dict(img=(size, size, 3) uint8 RGB, img_shape,
    ori_shape, sample_idx)`` before the pipeline; no labels. With ``split='train'``/``'val'``
    image ``i`` is the image :func:`~mmdat.datasets.make_shapes_classification` (same ``seed``,
    ``size``, ``classes``) writes as ``<split>/<classes[i % C]>/<i // C>.png``.

    Args:
        num_images (int): number of images.
        size (int): image side in pixels. Defaults to 32.
        split (str): name of the random stream. Defaults to 'train'.
        seed (int): seed of the stream. Defaults to 0.
        classes (Sequence[str], optional): shapes to draw, in turn. Defaults to
            :data:`~mmdat.datasets.CLASSIFICATION_CLASSES`.
        pipeline (Sequence[dict]): transforms, e.g. ``RandomCrop``, ``RandomFlip``, ``PackInputs``.
        **kwargs: other :class:`mmengine.dataset.BaseDataset` arguments (``test_mode``, ...).
    """

    def __init__(self, num_images: int, size: int = 32, split: str = 'train', seed: int = 0,
                 classes: Optional[Sequence[str]] = None, pipeline: Sequence = (), **kwargs) -> None:
        if num_images < 1:
            raise ValueError(f'num_images must be >= 1, got {num_images}')
        if size < 8:
            raise ValueError(f'size must be >= 8, got {size}')
        self.num_images, self.size, self.split, self.seed = int(num_images), int(size), split, int(seed)
        self.classes = tuple(classes) if classes is not None else CLASSIFICATION_CLASSES
        super().__init__(pipeline=list(pipeline), serialize_data=False, **kwargs)

    def load_data_list(self) -> list[dict]:
        return [dict(sample_idx=i) for i in range(self.num_images)]

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        images, _ = sample_shape_images(1, self.size, classes=self.classes, seed=self.seed, split=self.split,
                                        start=info['sample_idx'])
        info.update(img=images[0], img_shape=images.shape[1:3], ori_shape=images.shape[1:3])
        return info
