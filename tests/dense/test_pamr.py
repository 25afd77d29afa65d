import torch

from cliplab.dense.pamr import pamr, pixel_affinity


def test_affinity_sums_to_one_and_constant_scores_stay():
    image = torch.rand(3, 12, 10)
    assert torch.allclose(pixel_affinity(image, (1, 2)).sum(0), torch.ones(12, 10))
    probs = torch.full((2, 12, 10), 0.5)
    torch.testing.assert_close(pamr(image, probs, steps=3, dilations=(1, 2)), probs)


def test_refinement_snaps_noisy_scores_to_colour_regions():
    image = torch.zeros(3, 16, 16)
    image[:, :, 8:] = 1.0  # left half black, right half white
    truth = torch.zeros(16, 16, dtype=torch.long)
    truth[:, 8:] = 1
    torch.manual_seed(0)
    noisy = torch.nn.functional.one_hot(truth, 2).permute(2, 0, 1).float() * 0.6 + torch.rand(2, 16, 16) * 0.4
    noisy = noisy / noisy.sum(0)
    refined = pamr(image, noisy, steps=10, dilations=(1, 2))
    torch.testing.assert_close(refined.sum(0), torch.ones(16, 16))
    assert (refined.argmax(0) == truth).float().mean() >= (noisy.argmax(0) == truth).float().mean()
    assert (refined.argmax(0) == truth).all()
