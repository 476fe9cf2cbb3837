"""Install mmdat: Discrete Adversarial Training for OpenMMLab 2.x.

``pip install mmdat`` installs what ``import mmdat`` needs (torch, mmengine, numpy, Pillow); each
task family has an extra: ``mmdat[cls]`` (mmpretrain), ``mmdat[det]`` (mmdet), ``mmdat[seg]``
(mmsegmentation), ``mmdat[robustness]`` (the corruption transforms); ``mmdat[mim]`` is every
OpenMMLab package, ``mmdat[optional]`` the corruption benchmarks and TensorBoard.

A wheel carries the repository's ``configs/`` as package data in ``mmdat/.mim/configs`` (where mim
keeps a package's configs); :func:`mmdat.utils.configs.config_file` finds them there, or next to the
package in a source checkout.
"""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def read_requirements(name: str) -> list[str]:
    """The requirements of ``requirements/<name>``, following ``-r other.txt`` includes."""
    requirements = []
    for line in HERE.joinpath('requirements', name).read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line.startswith('-r '):
            requirements += [r for r in read_requirements(line[3:].strip()) if r not in requirements]
        elif line and not line.startswith('-') and line not in requirements:
            requirements.append(line)
    return requirements


class BuildPyWithConfigs(build_py):
    """``build_py`` that also copies ``configs/`` into the built package as ``mmdat/.mim/configs``."""

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):  # an editable install reads the checkout's configs/ directly
            return
        target = Path(self.build_lib, 'mmdat', '.mim', 'configs')
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(HERE / 'configs', target)


version: dict = {}
exec(HERE.joinpath('mmdat', 'version.py').read_text(), version)

setup(
    name='mmdat',
    version=version['__version__'],
    description='Discrete Adversarial Training (DAT) for mmpretrain, mmdet and mmseg',
    long_description=HERE.joinpath('README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    package_data={'mmdat': ['assets/*.pth',  # the tiny VQGAN (embedded default)
                            'datasets/imagenet_lists/*.txt']},  # ImageNet-1k / -R / -A class lists
    include_package_data=True,
    cmdclass={'build_py': BuildPyWithConfigs},
    python_requires='>=3.9',
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'cls': read_requirements('cls.txt'),
        'det': read_requirements('det.txt'),
        'seg': read_requirements('seg.txt'),
        'robustness': read_requirements('robustness.txt'),
        'mim': read_requirements('mminstall.txt'),
        'optional': read_requirements('optional.txt'),
        'tests': read_requirements('tests.txt'),
        'all': list(dict.fromkeys(read_requirements('mminstall.txt') + read_requirements('optional.txt'))),
    },
    license='Apache License 2.0',
)
