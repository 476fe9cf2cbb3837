"""Benchmark DAT: VQGAN throughput/memory, training-step time, FLOPs against the device's bound.

Markdown table on stdout (and --md), everything in JSON (--json). Medians of --repeats runs after
--warmup, variants interleaved. Defaults finish in a few minutes: on CPU the f8-16384 VQGAN at 224 px
(fp32, plus bf16 where the CPU computes it natively: AMX / AVX512-BF16) and the tiny classifier; on
CUDA every size, bf16/fp16, torch.compile and ResNet-50 / ViT-B/16 steps. Examples::

    python tools/analysis_tools/benchmark_dat.py --threads 1
    python tools/analysis_tools/benchmark_dat.py --sections vqgan \
        --reference-code path/to/easyrobust/easyrobust/third_party/vqgan.py   # the published code as baseline
    python tools/analysis_tools/benchmark_dat.py --sections step --models resnet50 \
        --step-vqgan openimages-f8-16384 --step-size 224 --step-batch 2 --step-trunk-dtype fp32 bf16
    python tools/analysis_tools/benchmark_dat.py --sections step --models resnet50 \
        --step-vqgan openimages-f8-16384 --step-size 224 --step-batch 2
    python tools/analysis_tools/benchmark_dat.py --sections vqgan --sizes 800x1344 --variants default
    python tools/analysis_tools/benchmark_dat.py --sections amp --threads 1   # the attack under AMP
    python tools/analysis_tools/benchmark_dat.py --quick      # smoke test, seconds
"""
import argparse
import sys

import torch

from mmdat.apis.benchmark import CLASSIFIERS, VARIANTS, BenchmarkSettings, parse_size, run_benchmark, save_result


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--quick', action='store_true', help='tiny VQGAN and sizes: a smoke test')
    p.add_argument('--sections', nargs='+', choices=['vqgan', 'step', 'amp', 'flops'],
                   help="default: vqgan step flops ('amp': the attack under mixed precision)")
    p.add_argument('--amp-dtypes', nargs='+', choices=['bf16', 'fp16'], help='autocast dtypes of the amp section')
    p.add_argument('--vqgan', help="VQGAN of the vqgan/flops sections: a preset (random weights) or 'tiny'")
    p.add_argument('--sizes', nargs='+', type=parse_size, help="vqgan section sizes, e.g. 224 512 800x1344")
    p.add_argument('--batch', type=int, help='vqgan section images per call (sizes above 512 px: --chunk-size)')
    p.add_argument('--chunk-size', type=int, help='VQGAN chunk_size and batch above 512 px (default 2)')
    p.add_argument('--variants', nargs='+', choices=sorted(VARIANTS), help='VQGAN variants to time')
    p.add_argument('--no-compile', action='store_true', help='drop the torch.compile variant')
    p.add_argument('--reference-code', nargs='+', metavar='FILE',
                   help="the published VQGAN code to time as the reference of every ratio, on the same weights: "
                        "easyrobust's easyrobust/third_party/vqgan.py or taming-transformers' taming/models/vqgan.py "
                        "(imported from where it lies; needs einops)")
    p.add_argument('--models', nargs='+', choices=sorted(CLASSIFIERS), help='step section classifiers')
    p.add_argument('--step-vqgan', help="VQGAN of the step section ('tiny', 'tiny-shapes' or a preset)")
    p.add_argument('--step-trunk-dtype', nargs='+', choices=['fp32', 'bf16', 'fp16'],
                   help='its trunk dtype(s), each timed; with fp32 and another, DAT\'s codes are compared '
                        '(default fp32; CUDA bf16)')
    p.add_argument('--step-size', type=int)
    p.add_argument('--step-batch', type=int)
    p.add_argument('--warmup', type=int)
    p.add_argument('--repeats', type=int)
    p.add_argument('--threads', type=int, help='torch CPU threads (default: torch default)')
    p.add_argument('--json', help='write the full result here')
    p.add_argument('--md', help='write the Markdown tables here')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = BenchmarkSettings.for_device(args.device, quick=args.quick)
    for key, attr in (('sections', 'sections'), ('vqgan', 'vqgan'), ('sizes', 'vqgan_sizes'), ('batch', 'vqgan_batch'),
                      ('chunk_size', 'chunk_size'), ('variants', 'variants'), ('models', 'models'),
                      ('reference_code', 'reference_code'), ('step_trunk_dtype', 'step_trunk_dtypes'),
                      ('step_vqgan', 'step_vqgan'), ('step_size', 'step_size'), ('step_batch', 'step_batch'),
                      ('warmup', 'warmup'), ('repeats', 'repeats'), ('amp_dtypes', 'amp_dtypes')):
        if getattr(args, key) is not None:
            setattr(settings, attr, getattr(args, key))
    if args.no_compile:
        settings.variants = [v for v in settings.variants if v != 'compile']
    result = run_benchmark(settings, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(save_result(result, args.json, args.md))
    return 0


if __name__ == '__main__':
    sys.exit(main())
