"""DATAttack: the task-agnostic algorithm, checked against hand computations."""
import math

import pytest
import torch
import torch.nn as nn

from mmdat.dat import DATAttack, valid_region_mask
from mmdat.models import VQGAN
from mmdat.testing import IdentityQuantizer  # Q = identity, to check the attack arithmetic


class GridQuantizer(IdentityQuantizer):
    """Q snaps every pixel to a grid of 1/8: a 'codebook' whose outputs are easy to recognise."""

    def encode(self, images):
        return (images * 8).round().long()

    def decode(self, codes, size=None):
        return codes.float() / 8


def linear_loss(weights):
    return lambda x: (x * weights).sum()


def test_one_l2_step_matches_hand_computation():
    torch.manual_seed(0)
    x = torch.full((2, 3, 4, 5), 0.5)
    w = torch.randn(2, 3, 4, 5)
    attack = DATAttack(IdentityQuantizer(), eps=0.1, step_size=0.05, random_start_prob=0.0)
    result = attack.run(x, linear_loss(w))
    unit = w / w.flatten(1).norm(dim=1).view(2, 1, 1, 1)
    expected = 0.5 + 0.05 * unit
    torch.testing.assert_close(result.perturbed, expected)
    torch.testing.assert_close(result.adversarial, expected)
    assert not result.random_start
    assert result.start_loss == pytest.approx(float((x * w).sum()))


def test_l2_projection_and_clamp():
    torch.manual_seed(1)
    x = torch.rand(3, 3, 8, 8)
    w = torch.randn(3, 3, 8, 8)
    attack = DATAttack(IdentityQuantizer(), eps=0.1, step_size=0.5, random_start_prob=0.0)
    pert = attack.run(x, linear_loss(w)).perturbed
    delta_norm = (pert - x).flatten(1).norm(dim=1)
    assert torch.all(delta_norm <= 0.1 + 1e-6)
    assert pert.min() >= 0 and pert.max() <= 1
    # before clamping the projected step has norm exactly eps: no pixel near the border here
    x_mid = torch.full((1, 3, 8, 8), 0.5)
    pert_mid = attack.run(x_mid, linear_loss(w[:1])).perturbed
    assert float((pert_mid - x_mid).norm()) == pytest.approx(0.1, rel=1e-5)


def test_linf_step():
    x = torch.full((1, 3, 4, 4), 0.5)
    w = torch.randn(1, 3, 4, 4)
    attack = DATAttack(IdentityQuantizer(), eps=0.03, step_size=0.01, steps=5, norm='linf',
                       random_start_prob=0.0)
    pert = attack.run(x, linear_loss(w)).perturbed
    torch.testing.assert_close(pert, 0.5 + 0.03 * w.sign())


def test_random_start_stays_in_ball_and_is_drawn_once_per_batch():
    x = torch.full((4, 3, 6, 6), 0.5)
    zero_grad_loss = lambda im: (im * 0).sum()  # noqa: E731  the step adds nothing
    attack = DATAttack(IdentityQuantizer(), eps=0.1, step_size=0.1, random_start_prob=1.0)
    result = attack.run(x, zero_grad_loss)
    assert result.random_start
    norms = (result.perturbed - x).flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full((4,), 0.1), rtol=1e-4, atol=1e-6)


def test_decisions_identical_for_equal_seed_and_step():
    a = DATAttack(IdentityQuantizer(), seed=7)
    b = DATAttack(IdentityQuantizer(), seed=7)
    c = DATAttack(IdentityQuantizer(), seed=8)
    draws_a = [a.draw(s, 'random_start') for s in range(200)]
    assert draws_a == [b.draw(s, 'random_start') for s in range(200)]
    assert draws_a != [c.draw(s, 'random_start') for s in range(200)]
    starts = sum(d < 0.8 for d in draws_a) / len(draws_a)
    assert 0.7 < starts < 0.9


def test_non_finite_gradient_skips_the_batch():
    x = torch.rand(2, 3, 4, 4)
    attack = DATAttack(GridQuantizer(), random_start_prob=0.0)
    result = attack.run(x, lambda im: (im.sqrt() * float('nan')).sum())
    assert result.skipped and 'non-finite' in result.skipped_reason
    # __call__ falls back to Q(x): training goes on with a valid, discrete image
    fallback = attack(x, lambda im: (im * float('inf')).sum())
    torch.testing.assert_close(fallback, (x * 8).round() / 8)


def test_attack_leaves_no_parameter_gradient():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    x = torch.rand(2, 3, 8, 8)
    model(x)
    target = torch.tensor([0, 1])
    attack = DATAttack(GridQuantizer(), random_start_prob=0.5)
    attack(x, lambda im: nn.functional.cross_entropy(model(im), target))
    assert all(p.grad is None for p in model.parameters())


def test_padding_untouched_with_valid_sizes():
    x = torch.rand(2, 3, 10, 12)
    sizes = [(10, 12), (6, 7)]
    mask = valid_region_mask(x, sizes)
    assert mask[1, 0, :6, :7].all() and not mask[1, 0, 6:, :].any() and mask[0].all()
    w = torch.randn_like(x)
    attack = DATAttack(GridQuantizer(), eps=0.2, step_size=0.2, random_start_prob=1.0)
    result = attack.run(x, linear_loss(w), image_sizes=sizes)
    for out in (result.reconstruction, result.perturbed, result.adversarial):
        assert torch.equal(out[1, :, 6:, :], x[1, :, 6:, :])
        assert torch.equal(out[1, :, :, 7:], x[1, :, :, 7:])
    assert torch.equal(result.adversarial[1, :, :6, :7], (result.perturbed[1, :, :6, :7] * 8).round() / 8)


def test_vqgan_resize_option_keeps_shape():
    x = torch.rand(1, 3, 40, 60)
    attack = DATAttack(GridQuantizer(), vqgan_max_size=20)
    assert attack.quantize(x).shape == x.shape


def test_bad_arguments():
    with pytest.raises(ValueError, match='norm'):
        DATAttack(IdentityQuantizer(), norm='l1')
    with pytest.raises(ValueError, match='RGB'):
        DATAttack(IdentityQuantizer()).run(torch.rand(1, 1, 4, 4), lambda x: x.sum())


@pytest.fixture(scope='module')
def tiny_vqgan():
    torch.manual_seed(0)
    return VQGAN(ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], z_channels=4,
                 n_embed=32, embed_dim=4, resolution=16)


def test_with_vqgan_adversarial_is_discrete_and_loss_rises(tiny_vqgan):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 3))
    x = torch.rand(6, 3, 16, 16)
    y = torch.randint(0, 3, (6,))
    loss_fn = lambda im: nn.functional.cross_entropy(model(im), y)  # noqa: E731
    attack = DATAttack(tiny_vqgan, eps=0.5, step_size=0.5, random_start_prob=0.0)
    result = attack.run(x, loss_fn, collect_stats=True)
    # within eps of x_rec before re-quantisation
    assert torch.all((result.perturbed - result.reconstruction).flatten(1).norm(dim=1) <= 0.5 + 1e-5)
    # x_rec and x_adv are VQGAN outputs: Q(x) and Q(x')
    torch.testing.assert_close(result.reconstruction, tiny_vqgan.reconstruct(x))
    torch.testing.assert_close(result.adversarial, tiny_vqgan.reconstruct(result.perturbed))
    # one normalised ascent step raises the loss over x_rec
    with torch.no_grad():
        assert loss_fn(result.perturbed) > loss_fn(result.reconstruction)
    stats = result.stats
    assert 0.0 <= stats['codes_changed'] <= 1.0
    assert 0.45 < stats['perturbation_norm'] <= 0.5 + 1e-5  # clamping to [0, 1] may shorten it
    assert math.isfinite(stats['reconstruction_psnr'])


def test_schedule_keeps_the_last_iterations_examples():
    """A run shorter than vis_interval still has its pictures (issue 19); vis_interval=0 stays off."""
    from mmdat.dat import DATSchedule
    schedule = DATSchedule(vis_interval=250, max_iters=10)
    assert [i for i in range(10) if schedule.settings(i).keep_examples] == [9]
    schedule = DATSchedule(vis_interval=4, max_iters=10)
    assert [i for i in range(10) if schedule.settings(i).keep_examples] == [3, 7, 9]
    assert not any(DATSchedule(vis_interval=0, max_iters=10).settings(i).keep_examples for i in range(10))
    assert not any(DATSchedule(vis_interval=250).settings(i).keep_examples for i in range(10))  # end unknown
    with pytest.raises(ValueError, match='max_iters'):
        DATSchedule(max_iters=-1)
