"""Convert a trusted taming-transformers / latent-diffusion VQGAN checkpoint to a safe state dict.

Lightning checkpoints pickle Python objects (hyper-parameters, callbacks), which mmdat refuses
to unpickle. This one-off tool loads such a file with ``weights_only=False`` -- which executes
pickle code, so use it ONLY on files from a source you trust -- keeps the VQGAN weights
(encoder., decoder., quantize., quant_conv., post_quant_conv.) and saves ``{'state_dict': ...}``
with plain tensors, loadable with ``torch.load(weights_only=True)``.

Example:
    python tools/model_converters/vqgan_to_state_dict.py last.ckpt vqgan_f16_16384.pth --preset imagenet-f16-16384
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from mmdat.models.vqgan_checkpoint import extract_state_dict, resolve_checkpoint_path

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
    parser.add_argument('src', help='trusted Lightning checkpoint (.ckpt, or a latent-diffusion .zip)')
    parser.add_argument('dst', help='output file, e.g. vqgan.pth')
    parser.add_argument('--preset', help='verify keys/shapes against this mmdat VQGAN preset')
    args = parser.parse_args()

    src = resolve_checkpoint_path(args.src)
    print(f'WARNING: loading {src} with weights_only=False executes pickled code; '
          'only do this with checkpoints from a trusted source.', file=sys.stderr)
    checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    state = extract_state_dict(checkpoint, src)
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
