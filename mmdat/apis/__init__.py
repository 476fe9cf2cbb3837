"""What mmdat's command-line tools are made of: config loading and runner construction.

The demo (:mod:`mmdat.apis.demo`), the benchmark (:mod:`mmdat.apis.benchmark`) and the DAT
visualisation (:mod:`mmdat.apis.visualize_dat`) are imported when used, not with this package.
"""
from mmdat.registry import deferred_attributes
from .runner import add_common_args, build_runner, close_cpu_distributed, load_config, setup_cpu_distributed

__getattr__ = deferred_attributes(__name__, {'run_demo': (f'{__name__}.demo', None),
                                             'visualize_dat': (f'{__name__}.visualize_dat', None)})

__all__ = ['add_common_args', 'build_runner', 'close_cpu_distributed', 'load_config', 'setup_cpu_distributed',
           'run_demo', 'visualize_dat']
