"""Install a tiny VQGAN trained by configs/vqgan/tiny-shapes.py as the shipped asset.

    python tools/model_converters/install_tiny_vqgan.py work_dirs/tiny-shapes/tiny_vqgan_shapes.pth [--force]

Training never writes into the package: ``tools/train.py configs/vqgan/tiny-shapes.py`` exports
the VQGAN into its work dir. This step measures the candidate and the installed
``mmdat/assets/tiny_vqgan_shapes.pth`` on the same 128 held-out shape images (mean per-image PSNR)
and replaces the asset only if the candidate is not worse, or with ``--force``. Exit status 1
when refused.
"""
from __future__ import annotations

import argparse
import sys

from mmdat.assets import TINY_VQGAN_CHECKPOINT
from mmdat.assets.install import HELD_OUT_IMAGES, install_tiny_vqgan


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('candidate', help='the exported VQGAN (VQGANExportHook output in the work dir)')
    parser.add_argument('--force', action='store_true', help='install even if its held-out PSNR is lower')
    parser.add_argument('--num-images', type=int, default=HELD_OUT_IMAGES['num'],
                        help='held-out images to measure both files on (default: %(default)s, the config\'s)')
    parser.add_argument('--dest', default=str(TINY_VQGAN_CHECKPOINT),
                        help='file to replace (default: the shipped asset, %(default)s)')
    args = parser.parse_args(argv)
    try:
        result = install_tiny_vqgan(args.candidate, force=args.force, destination=args.dest,
                                    num_images=args.num_images)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    print(result.message)
    return 0 if result.installed else 1


if __name__ == '__main__':
    sys.exit(main())
