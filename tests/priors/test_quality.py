from __future__ import annotations

import numpy as np
import pytest

from diffrecon.checks import InputError
from diffrecon.priors.quality import median_tissue_ratio, nearest_correlation, tissue_ratio


def _two_tissue_image(grey: float, white: float = 1.0) -> np.ndarray:
    image = np.zeros((16, 16))
    image[2:14, 2:14] = grey
    image[5:11, 5:11] = white
    return image


def test_tissue_ratio_recovers_grey_white_ratio():
    assert tissue_ratio(_two_tissue_image(4.0)) == pytest.approx(4.0)
    ratio, measured = median_tissue_ratio(np.stack([_two_tissue_image(3.0), _two_tissue_image(3.5),
                                                    np.zeros((16, 16))]))
    assert ratio == pytest.approx(3.25) and measured == 2
    with pytest.raises(InputError, match="tissue"):
        tissue_ratio(np.ones((16, 16)))


def test_nearest_correlation_separates_structure_from_noise():
    rng = np.random.default_rng(0)
    references = np.stack([_two_tissue_image(g) for g in (3.0, 3.5, 4.0)])
    assert nearest_correlation(2 * references[:1] + 1, references)[0] == pytest.approx(1.0)
    assert nearest_correlation(rng.random((4, 16, 16)), references).max() < 0.5
