import numpy as np
import pytest
import torch

from cliplab.data import synthetic as S
from cliplab.data.synthetic_torch import SyntheticScenes


def test_dataset_matches_generate_and_collates():
    recs = S.generate(8, seed=2)
    ds = SyntheticScenes(8, seed=2, target="short_caption")
    image, caption = ds[3]
    assert len(ds) == 8 and caption == recs[3].short_caption
    assert np.array_equal(np.asarray(image), np.asarray(recs[3].image))
    shape_ds = SyntheticScenes(8, seed=2, target="shape")
    assert shape_ds[5][1] == S.SHAPES.index(recs[5].objects[0]["shape"])
    mask_ds = SyntheticScenes(8, seed=2, target="semantic_mask", transform=lambda im: torch.zeros(3, 4, 4))
    pixels, masks = next(iter(torch.utils.data.DataLoader(mask_ds, batch_size=4)))
    assert pixels.shape == (4, 3, 4, 4) and masks.shape == (4, 64, 64)
    with pytest.raises(IndexError):
        ds[8]
    with pytest.raises(ValueError, match="target"):
        SyntheticScenes(2, target="colour")
