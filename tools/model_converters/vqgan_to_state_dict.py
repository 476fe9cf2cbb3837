"""Strip a taming-transformers / latent-diffusion VQGAN checkpoint down to the VQGAN's weights.

Not needed to use a published checkpoint: ``VQGAN(checkpoint=...)`` loads Lightning files (and
latent-diffusion zips) directly. This tool reads the file the same safe way (mmdat's restricted
unpickler: nothing from the file is imported or run), keeps the VQGAN weights (encoder., decoder.,
quantize., quant_conv., post_quant_conv.), optionally checks them against a preset and saves
``{'state_dict': ...}`` with plain tensors, a smaller file that ``torch.load(weights_only=True)`` reads.

Example:
    python tools/model_converters/vqgan_to_state_dict.py last.ckpt vqgan_f16_16384.pth --preset imagenet-f16-16384
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from mmdat.models.vqgan_checkpoint import VQGANCheckpointError, load_vqgan_state_dict

KEEP_PREFIXES = ('encoder.', 'decoder.', 'quantize.', 'quant_conv.', 'post_quant_conv.')


def check_against_preset(state: dict[str, torch.Tensor], preset: str) -> list[str]:
    """Problems (missing / unexpected / mis-shaped keys) of ``state`` against a VQGAN preset."""
    from mmdat.models.vqgan import VQGAN
    with torch.device('meta'):
        expected = {k: v.shape for k, v in VQGAN.from_preset(preset, checkpoint=None).state_dict().items()}
    problems = [f'missing: {k}' for k in expected if k not in state]
    problems += [f'unexpected: {k}' for k in state if k not in expected]
    problems += [f'shape: {k} {list(state[k].shape)} != {list(expected[k])}'
                 for k in expected if k in state and state[k].shape != expected[k]]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='Lightning checkpoint (.ckpt, or a latent-diffusion .zip), path or URL')
    parser.add_argument('dst', help='output file, e.g. vqgan.pth')
    parser.add_argument('--preset', help='verify keys/shapes against this mmdat VQGAN preset')
    args = parser.parse_args()

    try:
        state = load_vqgan_state_dict(args.src)
    except VQGANCheckpointError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    kept = {k: v.detach().clone().contiguous() for k, v in state.items() if k.startswith(KEEP_PREFIXES)}
    print(f'{len(state)} tensors in the state dict (loss.* excluded), kept {len(kept)}, '
          f'dropped {len(state) - len(kept)}')
    if not kept:
        print('error: no VQGAN weights found', file=sys.stderr)
        return 1
    if args.preset:
        problems = check_against_preset(kept, args.preset)
        if problems:
            print(f'error: {len(problems)} mismatches against preset {args.preset!r}:', file=sys.stderr)
            print('\n'.join(f'  {p}' for p in problems[:20]), file=sys.stderr)
            return 1
        print(f'keys and shapes match preset {args.preset!r}')
    Path(args.dst).parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': kept}, args.dst)
    print(f'saved {len(kept)} tensors to {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
