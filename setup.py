"""Install mmdat: Discrete Adversarial Training for OpenMMLab 2.x."""
from pathlib import Path

from setuptools import find_packages, setup


def read_requirements(name: str) -> list[str]:
    lines = Path(__file__).parent.joinpath('requirements', name).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith(('#', '-'))]


version: dict = {}
exec(Path(__file__).parent.joinpath('mmdat', 'version.py').read_text(), version)

setup(
    name='mmdat',
    version=version['__version__'],
    description='Discrete Adversarial Training (DAT) for mmpretrain, mmdet and mmseg',
    long_description=Path(__file__).parent.joinpath('README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    package_data={'mmdat': ['assets/*.pth',  # the tiny VQGAN (embedded default)
                            'datasets/imagenet_lists/*.txt']},  # ImageNet-1k / -R / -A class lists
    include_package_data=True,
    python_requires='>=3.9',
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'mim': read_requirements('mminstall.txt'),
        'tests': read_requirements('tests.txt'),
        'optional': read_requirements('optional.txt'),
    },
    license='Apache License 2.0',
)
