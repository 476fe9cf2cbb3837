"""Train a model (classification, detection or segmentation: the config's default_scope decides).

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--resume [CKPT]] [--cfg-options k=v ...]
    tools/dist_train.sh CONFIG GPUS [...]
"""
import argparse

from mmdat.apis import add_common_args, build_runner, close_cpu_distributed, load_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train with mmdat (DAT for OpenMMLab)')
    parser.add_argument('config', help='config file')
    parser.add_argument('--amp', action='store_true',
                        help="automatic mixed precision (mmengine's AmpOptimWrapper: GPU/NPU/MLU/MUSA only)")
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from CKPT, or from the latest checkpoint in the work dir')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the actual / base batch size (auto_scale_lr)')
    add_common_args(parser)
    return parser.parse_args()


def amp_device_available() -> bool:
    """Whether mmengine's AmpOptimWrapper can run here (it asserts one of these devices)."""
    from mmengine.device import is_cuda_available, is_mlu_available, is_musa_available, is_npu_available
    return is_cuda_available() or is_npu_available() or is_mlu_available() or is_musa_available()


def main() -> None:
    args = parse_args()
    if args.amp and not amp_device_available():
        raise SystemExit("--amp needs a GPU (or NPU/MLU/MUSA): mmengine's AmpOptimWrapper does not train on "
                         'a CPU. Train without --amp on this machine (fp32).')
    cfg = load_config(args)
    if args.amp:
        optim_wrapper = cfg.optim_wrapper
        if optim_wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper'):
            raise ValueError(f'--amp works with OptimWrapper, not {optim_wrapper.type}')
        optim_wrapper.type = 'AmpOptimWrapper'
        optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg:
            raise KeyError('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
    close_cpu_distributed()
