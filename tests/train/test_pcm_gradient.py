import torch

from cliplab.train.objectives.pcm import principal_components


def test_principal_components_gradient_is_finite_on_rank_deficient_batches():
    # 8 rows in 16 dimensions, each row twice: after centring, five singular values are 0, where
    # differentiating through the SVD divides by zero
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(0)).repeat(2, 1).requires_grad_(True)
    y = principal_components(x, 2)
    (y @ torch.randn(16, 3, generator=torch.Generator().manual_seed(1))).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():  # the forward is unchanged: the full basis reconstructs the rows
        assert torch.allclose(principal_components(x, 16), x, atol=1e-5)

