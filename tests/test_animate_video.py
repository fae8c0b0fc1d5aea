"""`thactl animate --video`: motion transfer from a real face clip with tiny saved networks: one
character frame per video frame at the video's rate, the poses `thactl track` writes, the source
beside the character, and one-line errors before any work for a bad drawing or a faceless video."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli
from faces import astronaut_face, blank_frame, rolled_frame, write_mp4
from tiny_networks import S, write_tiny_weights, write_disc_drawing

pytest.importorskip("mediapipe", reason='face tracking needs the [track] extra: pip install -e ".[track]"')


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("weights"), 3)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    face = astronaut_face()
    angles = [0, 0, 0, 0, 8, 8, 16, 16, -8, -8, 0, 0]
    return write_mp4(tmp_path_factory.mktemp("clip") / "face.mp4", [rolled_frame(face, a) for a in angles], fps=8)


def _drawing(path: Path, size: int = S) -> Path:
    return write_disc_drawing(path, size)


def test_video_motion_keeps_frame_count_rate_and_tracked_poses(weights, clip, tmp_path, capsys):
    import imageio.v3 as iio

    out, used, tracked = tmp_path / "out.mp4", tmp_path / "used.csv", tmp_path / "tracked.csv"
    rc = cli.main(["animate", str(_drawing(tmp_path / "d.png")), "--weights", str(weights), "--video", str(clip),
                   "-o", str(out), "--save-poses", str(used), "--device", "cpu", "--gain", "0.8"])
    assert rc == 0, capsys.readouterr().err
    assert cli.main(["track", str(clip), "-o", str(tracked), "--gain", "0.8"]) == 0
    capsys.readouterr()
    meta = iio.immeta(out)
    frames = iio.imread(out)
    assert frames.shape == (12, S, S, 3) and meta["fps"] == pytest.approx(8.0)
    used_poses = np.loadtxt(used, delimiter=",", skiprows=1)
    np.testing.assert_allclose(used_poses, np.loadtxt(tracked, delimiter=",", skiprows=1)[:, :6], atol=1e-5)
    assert used_poses[6, 2] < -0.6 and used_poses[8, 2] > 0.3      # the roll reached the character
    assert not np.array_equal(frames[0], frames[6])                 # a different pose, a different frame


def test_side_by_side_puts_the_video_left_of_the_character(weights, clip, tmp_path, capsys):
    out = tmp_path / "out.gif"
    rc = cli.main(["animate", str(_drawing(tmp_path / "d.png")), "--weights", str(weights), "--video", str(clip),
                   "-o", str(out), "--side-by-side", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    with Image.open(out) as im:
        width = 2 * round(640 * S / 480 / 2)
        assert im.size == (width + S, S) and im.n_frames >= 2
        first = np.asarray(im.convert("RGB"))
    source = np.asarray(Image.fromarray(rolled_frame(astronaut_face(), 0)).resize((width, S), Image.BILINEAR))
    assert np.abs(first[:, :width].astype(int) - source).mean() < 12     # GIF palette error only


def test_bad_drawing_or_faceless_video_fail_in_one_line_before_writing(weights, clip, tmp_path, capsys):
    out = tmp_path / "out.gif"
    big = _drawing(tmp_path / "big.png", size=2 * S)
    rc = cli.main(["animate", str(big), "--weights", str(weights), "--video", str(clip), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and f"image is {2 * S}x{2 * S}, the networks take {S}x{S}" in err and "track:" not in err
    empty = write_mp4(tmp_path / "empty.mp4", [blank_frame()] * 3, fps=8)
    rc = cli.main(["animate", str(_drawing(tmp_path / "d.png")), "--weights", str(weights), "--video", str(empty),
                   "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "no face found in any of its 3 frames" in err.splitlines()[-1]
    assert not out.exists()
    rc = cli.main(["animate", str(_drawing(tmp_path / "d.png")), "--weights", str(weights), "-o", str(out),
                   "--side-by-side"])
    assert rc == 1 and "--side-by-side needs --video" in capsys.readouterr().err
