"""core/imagegrid.py: compositing values and grid placement, checked pixel by pixel."""
import numpy as np

from core.imagegrid import blend_over, cell_origin, composite_over, enlarge, tile


def test_composite_over_known_values():
    px = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [200, 100, 0, 51]]], np.uint8)
    out = composite_over(px, (0, 0, 100))
    assert out.dtype == np.uint8
    # opaque keeps the colour, transparent gives the background, 20 % alpha blends
    assert out.tolist() == [[[255, 0, 0], [0, 0, 100], [40, 20, 80]]]
    np.testing.assert_allclose(blend_over(px, (0, 0, 100))[0, 2], [40, 20, 80], atol=1e-4)


def test_tile_places_cells_row_major_with_padding_caption_gap_and_heading():
    cells = [np.full((2, 2, 3), v, np.uint8) for v in (10, 20, 30)]
    g = tile(cells, 2, pad=1, gap_below=3, top=4, background=(7, 7, 7))
    assert g.shape == (4 + 2 * (2 + 3 + 1) + 1, 2 * 2 + 3 * 1, 3)
    for i, v in enumerate((10, 20, 30)):
        x, y = cell_origin(i, 2, 2, pad=1, gap_below=3, top=4)
        assert (g[y:y + 2, x:x + 2] == v).all()
    assert (x, y) == (1, 4 + 6)
    assert int((g == 7).all(axis=2).sum()) == g.shape[0] * g.shape[1] - 3 * 4


def test_enlarge_repeats_pixels():
    a = np.arange(4, dtype=np.uint8).reshape(2, 2, 1)
    assert enlarge(a, 2)[..., 0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    assert enlarge(a, 1) is a
