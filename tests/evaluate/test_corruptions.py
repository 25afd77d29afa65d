"""ImageNet-C corruptions: definitions checked by hand, by property, and against imagecorruptions
where that package imports (it needs a ``pkg_resources`` stand-in on current setuptools)."""

from __future__ import annotations

import sys
import types
from importlib import resources

import numpy as np
import pytest
from PIL import Image

from cliplab.data import synthetic
from cliplab.errors import InputError
from cliplab.evaluate.corruptions import CORRUPTIONS, corrupt, disk_kernel, motion_kernel_offsets, plasma_fractal

IMAGE = synthetic.scene(0, seed=1).image


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_every_corruption_changes_more_with_severity(name):
    x = np.asarray(IMAGE, np.float64)
    change = [np.abs(np.asarray(corrupt(IMAGE, name, s, np.random.default_rng(0)), np.float64) - x).mean() for s in (1, 5)]
    out = corrupt(IMAGE, name, 3, np.random.default_rng(0))
    assert out.size == IMAGE.size and out.mode == "RGB"
    if name != "saturate":  # saturate's mildest levels desaturate, its harshest over-saturate
        assert 0 < change[0] < change[1]
    same = corrupt(IMAGE, name, 3, np.random.default_rng(0))
    assert np.array_equal(np.asarray(out), np.asarray(same))  # seeded


def test_hand_checked_definitions():
    grey = Image.fromarray(np.full((8, 8, 3), 100, np.uint8))
    # contrast on a flat image changes nothing (up to the truncation to uint8 ImageNet-C does too);
    # brightness adds c to V in HSV
    flat = np.asarray(corrupt(grey, "contrast", 5, np.random.default_rng(0))).astype(int)
    assert np.abs(flat - 100).max() <= 1
    assert abs(int(np.asarray(corrupt(grey, "brightness", 2, np.random.default_rng(0)))[0, 0, 0]) - (100 / 255 + 0.2) * 255) <= 1
    # gaussian noise at severity 1 has std 0.08 * 255 (before clipping, mid-grey rarely clips)
    noisy = np.asarray(corrupt(Image.fromarray(np.full((64, 64, 3), 128, np.uint8)), "gaussian_noise", 1, np.random.default_rng(0)), np.float64)
    assert noisy.std() == pytest.approx(0.08 * 255, rel=0.05)
    k = disk_kernel(3, 0.1)
    assert k.shape == (17, 17) and k.sum() == pytest.approx(1.0) and k[8, 8] > 0 and k[8, 12] == pytest.approx(0.0, abs=1e-12)
    w, offsets = motion_kernel_offsets(10, 3, 0.0)
    assert len(w) == 21 and w[0] == w.max() and offsets[5] == (0, 5)
    f = plasma_fractal(32, 2.0, np.random.default_rng(0))
    assert f.shape == (32, 32) and f.min() == 0 and f.max() == 1


def test_bad_names_and_severities():
    with pytest.raises(InputError):
        corrupt(IMAGE, "frost", 1, np.random.default_rng(0))
    with pytest.raises(InputError):
        corrupt(IMAGE, "fog", 6, np.random.default_rng(0))


@pytest.fixture
def imagecorruptions(monkeypatch):
    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:  # setuptools >= 81 dropped it; the package only needs resource_filename
            shim = types.ModuleType("pkg_resources")
            shim.resource_filename = lambda pkg, name: str(resources.files(pkg) / name)
            monkeypatch.setitem(sys.modules, "pkg_resources", shim)
    return pytest.importorskip("imagecorruptions.corruptions")


@pytest.mark.parametrize("name", ["defocus_blur", "zoom_blur", "brightness", "contrast", "saturate", "jpeg_compression", "pixelate"])
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_deterministic_corruptions_match_imagecorruptions(imagecorruptions, name, severity):
    x = np.asarray(IMAGE)
    from imagecorruptions import corrupt as their_corrupt

    theirs = their_corrupt(x.copy(), corruption_name=name, severity=severity).astype(int)
    ours = np.asarray(corrupt(IMAGE, name, severity, np.random.default_rng(0))).astype(int)
    assert np.abs(ours - theirs).max() <= 1  # float rounding at most one grey level


def test_motion_blur_matches_imagecorruptions_at_a_fixed_angle(imagecorruptions):
    from cliplab.evaluate.corruptions import motion_blur

    x = np.asarray(IMAGE, np.float64)

    class FixedAngle:
        def uniform(self, lo, hi):
            return 20.0

    theirs = np.clip(imagecorruptions._motion_blur(x, 15, 8, 20.0), 0, 255)
    assert np.allclose(motion_blur(x, 3, FixedAngle()), theirs)
