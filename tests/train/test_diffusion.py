"""The conditional DDPM decoder: the cosine schedule and q(x_t | x_0) against their closed forms, the
UNet's shapes, and the eps-prediction loss falling on a tiny set."""

from __future__ import annotations

import math

import numpy as np
import torch

from cliplab.train.diffusion import (
    STEPS,
    DiffusionDecoder,
    cosine_alpha_bars,
    q_sample,
    timestep_embedding,
)


def test_cosine_schedule_is_nichol_dhariwal_eq_17():
    ab = cosine_alpha_bars()
    assert ab.shape == (STEPS,) and torch.all(ab[1:] < ab[:-1]) and 0 < ab[-1] < 1e-4 and 0.999 < ab[0] <= 1
    f = lambda t: math.cos((t / STEPS + 0.008) / 1.008 * math.pi / 2) ** 2
    for t in (0, 100, 500, 900):  # abar_t = f(t+1)/f(0) (index t is after t+1 steps) where no beta was clipped
        assert math.isclose(float(ab[t]), f(t + 1) / f(0), rel_tol=1e-9)
    betas = 1 - ab[1:] / ab[:-1]
    assert float(betas.max()) <= 0.999 + 1e-12


def test_q_sample_has_the_closed_form_mean_and_variance():
    ab = cosine_alpha_bars().float()
    x0 = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for step in (10, 400, 990):
        t = torch.tensor([step])
        a = float(ab[step])
        assert torch.allclose(q_sample(x0, t, torch.zeros_like(x0), ab), math.sqrt(a) * x0, atol=1e-6)  # the mean
        eps = torch.randn(20_000, 3, 4, 4, generator=torch.Generator().manual_seed(step))
        xt = q_sample(x0.expand_as(eps), t.expand(len(eps)), eps, ab)
        assert torch.allclose(xt.mean(0), math.sqrt(a) * x0[0], atol=0.03)
        assert torch.allclose(xt.var(0), torch.full_like(x0[0], 1 - a), atol=0.03)  # the variance: (1 - abar_t) I


def test_timestep_embedding_and_unet_shapes():
    emb = timestep_embedding(torch.tensor([0, 5]), 8)
    assert emb.shape == (2, 8) and torch.allclose(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    dec = DiffusionDecoder(12, width=4, size=16)
    x = torch.randn(3, 3, 16, 16)
    assert dec(x, torch.tensor([0, 10, 999]), torch.randn(3, 12)).shape == x.shape
    assert dec.config() == {"embed_dim": 12, "width": 4, "size": 16}


def test_denoising_loss_falls_on_a_tiny_set_and_uses_the_condition():
    gen = torch.Generator().manual_seed(0)
    cond = torch.nn.functional.normalize(torch.randn(4, 8, generator=gen), dim=-1)
    x0 = torch.sign(torch.randn(4, 3, 8, 8, generator=gen))  # four fixed +-1 images, one per condition
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dec = DiffusionDecoder(8, width=4, size=8)
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        loss = dec.loss(cond, x0, gen, draws=2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    with torch.no_grad():  # at mid noise, its own condition denoises better than another image's
        own = np.mean([dec.loss(cond, x0, torch.Generator().manual_seed(s), (0.3, 0.7), 8).item() for s in range(5)])
        other = np.mean([dec.loss(cond.roll(1, 0), x0, torch.Generator().manual_seed(s), (0.3, 0.7), 8).item() for s in range(5)])
    assert own < other
