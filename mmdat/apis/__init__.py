"""What mmdat's command-line tools are made of: config loading and runner construction."""
from .runner import add_common_args, build_runner, close_cpu_distributed, load_config, setup_cpu_distributed
from .demo import run_demo  # noqa: E402
from . import benchmark  # noqa: E402  (mmdat.apis.benchmark: tools/analysis_tools/benchmark_dat.py)
from .visualize_dat import visualize_dat  # noqa: E402

__all__ = ['add_common_args', 'build_runner', 'close_cpu_distributed', 'load_config', 'setup_cpu_distributed', 'run_demo', 'visualize_dat']
