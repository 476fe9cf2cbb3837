"""The benchmark tool and its package module (tiny sizes; no timing assertions)."""
import json
import sys

import pytest
import torch

from conftest import REPO, record_loss_calls, run_tool
from mmdat.apis.benchmark import (BenchmarkSettings, RSSSampler, build_classifier, build_vqgan, parse_size,
                                  reference_step, render_markdown, vqgan_flops, _classification_batch)


def test_quick_run_writes_json_and_markdown(tmp_path):
    out = run_tool([sys.executable, 'tools/analysis_tools/benchmark_dat.py', '--quick', '--threads', '1',
                    '--json', str(tmp_path / 'b.json'), '--md', str(tmp_path / 'b.md')], cwd=REPO, timeout=300)
    result = json.loads((tmp_path / 'b.json').read_text())
    rows = result['vqgan']
    assert [(r['size'], r['variant']) for r in rows] == [
        (s, v) for s in ('32x32', '24x40') for v in ('baseline', 'default', 'nchw')]
    for r in rows:
        assert r['images_per_s'] > 0 and r['seconds'] > 0 and len(r['times']) == 1
        assert r['code_agreement'] == 1.0  # fp32 paths pick the same codes as the taming baseline
        assert r['max_abs_diff'] < 1e-3
        assert r['gflops'] > 0 and 0 < r['fraction_of_bound']
        assert r['peak_mb'] is not None and r['peak_mb'] >= 0
    by_variant = {r['variant']: r for r in rows if r['size'] == '32x32'}
    assert by_variant['default']['gflops'] < by_variant['baseline']['gflops']  # sub-pixel upsampling: fewer FLOPs
    steps = {r['mode']: r for r in result['step']}
    assert set(steps) == {'plain', 'dat', 'reference', 'vqgan'} and steps['plain']['x_plain'] == 1.0
    # FLOP accounting: DAT adds two VQGAN passes and an attack; the reference also a parameter backward
    # and an extra forward
    mf = result['step'][0]['model_flops']
    assert 0 < mf['input_backward'] < mf['backward']
    assert steps['plain']['gflops'] < steps['dat']['gflops'] < steps['reference']['gflops']
    assert steps['reference']['gflops'] - steps['dat']['gflops'] == pytest.approx(
        (mf['forward'] + mf['backward'] - mf['input_backward']) / 1e9)
    assert result['peak_at_start']['float32']['gemm_gflops_per_s'] > 0
    assert all(r['peak_gflops_per_s'] > 0 for r in rows + result['step'])
    md = (tmp_path / 'b.md').read_text()
    assert md in out and '| cuda | all |' in md and 'not measured' in md
    assert md == render_markdown(result)


def test_vqgan_flops_match_published_cost():
    """One f8-16384 pass is ~266 GMACs at 224 px and ~7.6 TMACs at 800x1344 (dat-facts)."""
    config = dict(ch=128, ch_mult=(1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(32,), z_channels=4,
                  embed_dim=4, n_embed=16384, resolution=256)
    small = vqgan_flops(config, (224, 224))
    assert small['total'] / 2 == pytest.approx(266e9, rel=0.05)
    assert small['code_search'] == 2 * 28 * 28 * 16384 * 4
    assert 0 < small['attention'] < small['encoder'] < small['decoder']
    assert vqgan_flops(config, (224, 224), batch=3)['total'] == pytest.approx(3 * small['total'])
    large = vqgan_flops(config, (800, 1344))
    assert large['total'] / 2 == pytest.approx(7.6e12, rel=0.05)
    products = 7 * 2 * 16800 ** 2 * 512 * 2  # 7 attention blocks, 2 products of HW x HW x C MACs each
    assert large['attention'] - products == pytest.approx(7 * 4 * 16800 * 512 ** 2 * 2)  # + q, k, v, proj_out
    assert products / 2 == pytest.approx(2.0e12, rel=0.02)  # the ~2 TMACs of attention are part of the 7.6
    assert vqgan_flops(config, (220, 221))['total'] == small['total']  # padded to a multiple of 8
    # the default path's sub-pixel upsampling: per upsampling of C channels from h x h, 2 * C^2 * 16 * h^2
    # multiply-adds instead of 2 * C^2 * 9 * (2h)^2
    executed = vqgan_flops(config, (224, 224), subpixel_upsample=True)
    assert small['total'] - executed['total'] == 40 * (512 ** 2 * 28 ** 2 + 256 ** 2 * 56 ** 2 + 256 ** 2 * 112 ** 2)
    assert executed['encoder'] == small['encoder']


def test_parse_size():
    assert parse_size('224') == (224, 224) and parse_size('800x1344') == (800, 1344)
    for bad in ('0', 'x', '12x', '1x2x3', 'abc'):
        with pytest.raises(ValueError, match='HxW'):
            parse_size(bad)


def test_rss_sampler_sees_an_allocation():
    with RSSSampler(torch.device('cpu')) as sampler:
        block = torch.ones(64 * 2 ** 20 // 4)  # 64 MB, touched
        del block
    assert sampler.peak_bytes >= 48 * 2 ** 20


def test_settings_per_device(monkeypatch):
    from mmdat.models import vqgan as vqgan_module
    monkeypatch.setattr(vqgan_module, '_cpu_flags', lambda: {'avx2', 'fma'})
    cpu = BenchmarkSettings.for_device('cpu')
    assert 'bf16' not in cpu.variants and 'compile' not in cpu.variants  # emulated bf16 / minutes of compiling
    assert cpu.vqgan == 'openimages-f8-16384' and cpu.vqgan_sizes == ((224, 224),) and cpu.vqgan_batch == 4
    monkeypatch.setattr(vqgan_module, '_cpu_flags', lambda: {'avx512f', 'amx_bf16'})
    assert 'bf16' in BenchmarkSettings.for_device('cpu').variants  # timed where the CPU computes bf16 natively
    cuda = BenchmarkSettings.for_device('cuda')
    assert {'bf16', 'baseline', 'default'} <= set(cuda.variants) and (800, 1344) in cuda.vqgan_sizes


def test_reference_step_costs_one_backward_and_one_extra_forward():
    from mmengine.optim import OptimWrapper
    vqgan = build_vqgan('tiny', torch.device('cpu'))
    model = build_classifier('tiny', torch.device('cpu'), dict(random_start_prob=0.0))
    model.data_preprocessor.attach_dat(model, vqgan)
    calls = record_loss_calls(model)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0))
    seen_grads = []
    optim.zero_grad = lambda: (seen_grads.append(any(p.grad is not None for p in model.parameters())),
                               model.zero_grad(set_to_none=True))
    reference_step(model, _classification_batch(10, 16, 2), optim)
    # attack (with gradient), the unused extra forward, clean, adversarial
    assert [c['attack'] for c in calls] == [True, False, False, False]
    assert seen_grads[0]  # the attack's backward filled parameter gradients, as the reference code does
    x_rec = model.data_preprocessor.dat_attack.quantize(model.data_preprocessor.to_unit_rgb(calls[2]['inputs']))
    perturbed = model.data_preprocessor.to_unit_rgb(calls[1]['inputs'])
    delta = (perturbed - x_rec).flatten(1).norm(dim=1)
    assert torch.all(delta <= 0.1 + 1e-4) and torch.all(delta > 0.05)  # one L2 step of 0.1 around x_rec


def test_single_call_mode_and_section_selection():
    """``repeats=0`` times the first (memory) call only, as for 800x1344 on a CPU; sections are optional."""
    from mmdat.apis.benchmark import run_benchmark
    settings = BenchmarkSettings.for_device('cpu', quick=True)
    settings.sections, settings.variants, settings.repeats = ('vqgan',), ('default',), 0
    settings.vqgan_sizes, settings.chunk_size = ((16, 520),), 1  # above 512 px: batch = chunk_size
    result = run_benchmark(settings)
    assert 'step' not in result and 'flops' not in result
    row, = result['vqgan']
    assert row['batch'] == 1 and row['chunk_size'] == 1 and len(row['times']) == 1
    assert row['code_agreement'] is None and row['speedup'] == 1.0
    assert '| cpu | 16x520 | 1 (chunk 1) | default |' in render_markdown(result)
    with pytest.raises(ValueError, match='unknown sections'):
        run_benchmark(BenchmarkSettings(sections=('speed',)))


def test_memory_bound_of_the_f8_vqgan_at_detection_size():
    """800x1344, 2 images per pass: the largest tensor is the decoder's 256-channel full-resolution one."""
    from mmdat.apis.benchmark import vqgan_memory_bound
    config = dict(ch=128, ch_mult=(1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(32,), z_channels=4,
                  embed_dim=4, n_embed=16384, resolution=256)
    bound = vqgan_memory_bound(config, (800, 1344), 2)
    assert bound['largest_activation'] == 2 * 256 * 800 * 1344 * 4
    assert bound['bound'] == 4 * bound['largest_activation'] + 4 * 2 ** 26  # + one distance block
    assert vqgan_memory_bound(config, (800, 1344), 1)['largest_activation'] * 2 == bound['largest_activation']


def test_amp_section_times_the_attack_in_fp32_and_inside_autocast():
    """The ``amp`` section: the attack as mmdat runs it under each autocast (fp32 inside) against the
    attack inside the autocast, relative to plain fp32."""
    from mmdat.apis.benchmark import run_benchmark
    settings = BenchmarkSettings.for_device('cpu', quick=True)
    settings.sections, settings.step_size, settings.step_batch = ('amp',), 16, 2
    result = run_benchmark(settings)
    rows = result['amp']
    assert [(r['autocast'], r['attack_dtype']) for r in rows] == [
        (None, 'fp32'), ('bf16', 'fp32'), ('bf16', 'bf16'), ('fp16', 'fp32'), ('fp16', 'fp16')]
    assert rows[0]['x_fp32'] == 1.0 and all(r['seconds'] > 0 and len(r['times']) == 1 for r in rows)
    md = render_markdown(result)
    assert '| cpu | tiny | 2x3x16x16 | bf16 | fp32, autocast off (mmdat) |' in md
    assert '| cpu | tiny | 2x3x16x16 | fp16 | fp16 (inside autocast) |' in md
    with pytest.raises(ValueError, match='unknown amp dtypes'):
        run_benchmark(BenchmarkSettings(sections=('amp',), amp_dtypes=('fp8',)))
