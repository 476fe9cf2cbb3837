"""Out-of-distribution ImageNet test sets: ImageNet-R, -A, -Sketch, -V2 and Stylized-ImageNet.

Each dataset reads a folder of class folders (no annotation file) and labels images by the
benchmark's own rule, which is not always the sorted-folder rule of ``CustomDataset``:

=====================  ===========================  =================================================
dataset                class folders                label of an image
=====================  ===========================  =================================================
``ImageNetR``          the 200 ImageNet-R wnids     position among the 200 sorted wnids (0..199)
``ImageNetA``          the 200 ImageNet-A wnids     position among the 200 sorted wnids (0..199)
``ImageNetSketch``     the 1000 ImageNet-1k wnids   ImageNet-1k index (0..999)
``ImageNetV2``         ``0`` .. ``999``             ``int(folder)`` (never the string order)
``StylizedImageNet``   the 1000 ImageNet-1k wnids   ImageNet-1k index (0..999)
=====================  ===========================  =================================================

Images may sit anywhere below their class folder; files whose extension is not an image
extension, plain files next to the class folders (e.g. ImageNet-A's ``README.txt``) and hidden
entries are ignored. A missing root raises ``FileNotFoundError``; a wrong number of class folders,
an unknown folder name or a folder without any image at all raise ``ValueError``.
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Optional, Sequence, Union

from mmengine.logging import MMLogger
from mmpretrain.datasets import BaseDataset
from mmpretrain.datasets.categories import IMAGENET_CATEGORIES

from mmdat.registry import DATASETS
from .imagenet_lists import imagenet_1k_wnids, subset_indices, subset_wnids

__all__ = ['ImageNetVariantDataset', 'ImageNetR', 'ImageNetA', 'ImageNetSketch', 'ImageNetV2',
           'StylizedImageNet', 'IMAGE_EXTENSIONS']

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def _preview(names: Sequence[str], limit: int = 5) -> str:
    more = f' (+{len(names) - limit} more)' if len(names) > limit else ''
    return ', '.join(names[:limit]) + more


class ImageNetVariantDataset(BaseDataset):
    """Base of the ImageNet variants: a folder of class folders with a fixed folder -> label map.

    Subclasses set ``BENCHMARK`` (display name), ``NUM_CLASSES`` and ``FOLDER_NAMES`` (what the
    class folders are called, for error messages) and implement :meth:`folder_labels`.

    Args:
        data_root (str): the benchmark's root folder. Defaults to ''.
        data_prefix (str | dict): folder below ``data_root`` that holds the class folders
            (e.g. ``'sketch'`` for the unzipped ImageNet-Sketch archive). Defaults to ''.
        extensions (Sequence[str]): image file extensions, case-insensitive.
            Defaults to :data:`IMAGE_EXTENSIONS`.
        metainfo (dict, optional): overrides the class names. Defaults to None.
        lazy_init (bool): defer scanning the folders to the first access. Defaults to False.
        **kwargs: other arguments of mmpretrain's ``BaseDataset`` (``pipeline``, ``test_mode``...).
    """

    BENCHMARK = 'ImageNet variant'
    NUM_CLASSES = 1000
    FOLDER_NAMES = 'one per ImageNet-1k wnid'

    def __init__(self,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = '',
                 extensions: Sequence[str] = IMAGE_EXTENSIONS,
                 metainfo: Optional[dict] = None,
                 lazy_init: bool = False,
                 **kwargs) -> None:
        if not (data_root or data_prefix):
            raise ValueError(f'{type(self).__name__}: give data_root (the folder of the {self.BENCHMARK} '
                             'class folders)')
        if kwargs.pop('ann_file', ''):
            raise ValueError(f'{type(self).__name__} reads its labels from the folder names; ann_file is not '
                             'supported')
        self.extensions = tuple(sorted({ext.lower() for ext in extensions}))
        metainfo = {'classes': self.class_names(), **(metainfo or {})}
        super().__init__(ann_file='', metainfo=metainfo, data_root=data_root, data_prefix=data_prefix,
                         lazy_init=True, **kwargs)
        if not lazy_init:
            self.full_init()

    @classmethod
    def class_names(cls) -> tuple[str, ...]:
        """Human-readable names of the ``NUM_CLASSES`` labels, in label order."""
        return tuple(IMAGENET_CATEGORIES)

    def folder_labels(self, folders: Sequence[str]) -> dict[str, int]:
        """Map every class folder name to its label; raise ``ValueError`` on a bad folder set."""
        raise NotImplementedError

    def _class_folders(self, root: str) -> list[str]:
        if not osp.isdir(root):
            raise FileNotFoundError(f'{self.BENCHMARK} root {root!r} does not exist or is not a folder; '
                                    f'see the layout in the docstring of mmdat.datasets.{type(self).__name__}')
        with os.scandir(root) as entries:
            return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith('.'))

    def _wrong_count(self, root: str, folders: Sequence[str]) -> ValueError:
        hint = ''
        if len(folders) == 1:
            hint = (f'; the root holds a single folder {folders[0]!r}: did you mean '
                    f'{osp.join(root, folders[0])!r} (or data_prefix={folders[0]!r})?')
        return ValueError(f'{self.BENCHMARK} expects {self.NUM_CLASSES} class folders ({self.FOLDER_NAMES}) in '
                          f'{root!r}, found {len(folders)}{hint}')

    def _images_below(self, folder: str) -> list[str]:
        found = []
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
            found.extend(osp.join(dirpath, f) for f in sorted(filenames)
                         if not f.startswith('.') and f.lower().endswith(self.extensions))
        return found

    def load_data_list(self) -> list[dict]:
        """Scan the class folders; one ``dict(img_path, gt_label)`` per image."""
        root = self.img_prefix
        folders = self._class_folders(root)
        if len(folders) < 2:  # an empty root, or the archive's top folder one level too high
            raise self._wrong_count(root, folders)
        labels = self.folder_labels(folders)
        data_list, empty = [], []
        for folder in folders:
            images = self._images_below(osp.join(root, folder))
            if not images:
                empty.append(folder)
            data_list.extend(dict(img_path=path, gt_label=labels[folder]) for path in images)
        if not data_list:
            raise ValueError(f'{self.BENCHMARK}: no image files ({", ".join(self.extensions)}) in the class '
                             f'folders of {root!r}')
        if empty:
            MMLogger.get_current_instance().warning(
                f'{self.BENCHMARK}: {len(empty)} of {len(folders)} class folders in {root!r} hold no image: '
                f'{_preview(empty)}')
        return data_list

    def extra_repr(self) -> list[str]:
        return [f'Benchmark: \t{self.BENCHMARK}', f'Class folders in: \t{self.img_prefix}']


class _WnidFolderDataset(ImageNetVariantDataset):
    """Class folders named by wnid; labels are positions in the sorted list ``wnids()``."""

    @classmethod
    def wnids(cls) -> tuple[str, ...]:
        return imagenet_1k_wnids()

    def folder_labels(self, folders: Sequence[str]) -> dict[str, int]:
        known = {wnid: label for label, wnid in enumerate(self.wnids())}
        unknown = [f for f in folders if f not in known]  # folders is sorted
        if unknown:
            raise ValueError(f'{self.BENCHMARK}: {len(unknown)} class folder(s) in {self.img_prefix!r} are not '
                             f'{self.BENCHMARK} wnids: {_preview(unknown)}')
        if len(folders) != self.NUM_CLASSES:
            missing = sorted(set(known) - set(folders))
            raise ValueError(f'{self._wrong_count(self.img_prefix, folders)}; missing wnids: {_preview(missing)}')
        return {f: known[f] for f in folders}


class _SubsetWnidDataset(_WnidFolderDataset):
    """Class folders named by the 200 wnids of ``SUBSET``; labels 0..199 in sorted-wnid order."""

    SUBSET = 'imagenet-r'
    NUM_CLASSES = 200
    FOLDER_NAMES = 'one per wnid of the 200-class subset'

    @classmethod
    def wnids(cls) -> tuple[str, ...]:
        return subset_wnids(cls.SUBSET)

    @classmethod
    def class_names(cls) -> tuple[str, ...]:
        return tuple(IMAGENET_CATEGORIES[i] for i in subset_indices(cls.SUBSET))


@DATASETS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class ImageNetR(_SubsetWnidDataset):
    """ImageNet-R(endition) (Hendrycks et al. 2021): 30,000 renditions of 200 ImageNet classes.

    Layout (the released ``imagenet-r.tar``)::

        data/imagenet-r/
            n01443537/art_0.jpg ...
            ...                      # exactly the 200 ImageNet-R wnids

    Labels are positions among the 200 sorted wnids (0..199); evaluate with
    ``SubsetAccuracy(subset='imagenet-r')``, which restricts a 1000-way classifier's scores to
    those 200 classes before the arg-max.

    Args:
        data_root (str): root folder. Defaults to ''.
        **kwargs: see :class:`ImageNetVariantDataset`.
    """

    BENCHMARK = 'ImageNet-R'
    SUBSET = 'imagenet-r'


@DATASETS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class ImageNetA(_SubsetWnidDataset):
    """ImageNet-A (Hendrycks et al. 2021): 7,500 natural adversarial examples of 200 classes.

    Layout (the released ``imagenet-a.tar``; its ``README.txt`` is ignored)::

        data/imagenet-a/
            n01498041/0.000116_digital clock _ digital clock_0.865662.jpg ...
            ...                      # exactly the 200 ImageNet-A wnids

    Labels are positions among the 200 sorted wnids (0..199); evaluate with
    ``SubsetAccuracy(subset='imagenet-a')``.

    Args:
        data_root (str): root folder. Defaults to ''.
        **kwargs: see :class:`ImageNetVariantDataset`.
    """

    BENCHMARK = 'ImageNet-A'
    SUBSET = 'imagenet-a'


@DATASETS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class ImageNetSketch(_WnidFolderDataset):
    """ImageNet-Sketch (Wang et al. 2019): 50,889 sketches, 50 per ImageNet-1k class.

    Layout (``ImageNet-Sketch.zip`` unzips to ``sketch/``: point ``data_root`` at it, or set
    ``data_prefix='sketch'``)::

        data/imagenet-sketch/
            n01440764/n01440764_10034-1.JPEG ...
            ...                      # exactly the 1000 ImageNet-1k wnids

    Labels are ImageNet-1k indices (0..999); plain 1000-way accuracy.

    Args:
        data_root (str): root folder. Defaults to ''.
        **kwargs: see :class:`ImageNetVariantDataset`.
    """

    BENCHMARK = 'ImageNet-Sketch'


@DATASETS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class StylizedImageNet(_WnidFolderDataset):
    """Stylized-ImageNet (Geirhos et al. 2019) validation split: ImageNet val images re-styled by AdaIN.

    Layout (the ``val`` split written by the Stylized-ImageNet generation script; point
    ``data_root`` at it, or set ``data_prefix='val'``)::

        data/stylized-imagenet/
            n01440764/ILSVRC2012_val_00000293.JPEG ...
            ...                      # exactly the 1000 ImageNet-1k wnids

    Labels are ImageNet-1k indices (0..999); plain 1000-way accuracy.

    Args:
        data_root (str): root folder. Defaults to ''.
        **kwargs: see :class:`ImageNetVariantDataset`.
    """

    BENCHMARK = 'Stylized-ImageNet'


@DATASETS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class ImageNetV2(ImageNetVariantDataset):
    """ImageNetV2 (Recht et al. 2019), matched-frequency: 10,000 new test images, 10 per class.

    Layout (``imagenetv2-matched-frequency.tar.gz`` unpacks to
    ``imagenetv2-matched-frequency-format-val/``: point ``data_root`` at it)::

        data/imagenetv2-matched-frequency/
            0/7e5a...b2.jpeg ...
            1/ ...
            ...
            999/ ...                 # the ImageNet-1k class index as a decimal number

    The label of folder ``f`` is ``int(f)``. Sorting the folder names as strings, as an
    ``ImageFolder`` / ``CustomDataset`` does, puts ``10`` at position 2 and mislabels 990 of the
    1000 classes. Zero-padded names (``0000`` .. ``0999``) are accepted too.

    Args:
        data_root (str): root folder. Defaults to ''.
        **kwargs: see :class:`ImageNetVariantDataset`.
    """

    BENCHMARK = 'ImageNetV2'
    FOLDER_NAMES = '0 .. 999'

    def folder_labels(self, folders: Sequence[str]) -> dict[str, int]:
        bad = [f for f in folders if not (f.isdecimal() and f.isascii() and int(f) < self.NUM_CLASSES)]
        if bad:
            raise ValueError(f'{self.BENCHMARK}: class folders must be named by their ImageNet-1k index '
                             f'0..{self.NUM_CLASSES - 1}; in {self.img_prefix!r} found {_preview(bad)}')
        labels = {f: int(f) for f in folders}
        if len(set(labels.values())) != len(labels):
            clash = [f for f in folders if sum(v == labels[f] for v in labels.values()) > 1]
            raise ValueError(f'{self.BENCHMARK}: several folders name the same class in {self.img_prefix!r}: '
                             f'{_preview(clash)}')
        if len(folders) != self.NUM_CLASSES:
            missing = sorted(set(range(self.NUM_CLASSES)) - set(labels.values()))
            raise ValueError(f'{self._wrong_count(self.img_prefix, folders)}; missing classes: '
                             f'{_preview([str(m) for m in missing])}')
        return labels
