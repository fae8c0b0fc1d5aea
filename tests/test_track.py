"""`thactl track` on real faces (photos that ship in packages): calibration, in-plane roll through an
MP4 written and read back, yaw/pitch signs, mouth and eye states with THA1's mirror rule, frames
without a face, bad input; and the numpy parts (geometry, smoothing, mapping) on exact data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cli
from faces import (astronaut_face, blank_frame, grace_hopper, rolled_frame, turned_frame, write_mp4)
from tracking import geometry as g
from tracking.calibration import Neutral
from tracking.posemap import PoseMapping, to_poses
from tracking.smoothing import forward_backward, hold_last
from inference.motion import read_csv


def _tracker():
    pytest.importorskip("mediapipe", reason='face tracking needs the [track] extra: pip install -e ".[track]"')
    from tracking.facemesh import FaceTracker

    return FaceTracker(video=False)


def _read_track_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return rows[:, :6], rows[:, 6]


# ----------------------------------------------------------------------------- exact, no tracker


def test_procrustes_recovers_known_rotations_and_angles_round_trip():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(478, 3)) * 40
    truth = np.array([[5, -12, 20], [0, 0, 0], [30, 3, -7], [-14, 14, 14]], float)
    rot = g.angles_to_rotation(truth)
    flip = np.array([1.0, -1.0, -1.0])   # image axes (y down, z away) <-> y up, z toward
    cur = np.einsum("nij,kj->nki", rot, ref * flip) * flip * 1.7 + (300, 200, 5)
    np.testing.assert_allclose(g.rotation_to_angles(g.head_rotation(ref, cur)), truth, atol=1e-6)


def test_angle_names_follow_the_image():
    """tilt > 0: the top of the head moves toward the image's left (y down in image rows)."""
    top = np.array([0.0, 1.0, 0.0])                        # y-up frame
    moved = g.angles_to_rotation(np.array([0.0, 0.0, 10.0])) @ top
    assert moved[0] < 0                                    # toward the image's left
    front = np.array([0.0, 0.0, 1.0])
    assert (g.angles_to_rotation(np.array([0.0, 10.0, 0.0])) @ front)[0] < 0   # turn: front to the left
    assert (g.angles_to_rotation(np.array([10.0, 0.0, 0.0])) @ front)[1] > 0   # up: front moves up


def test_mirror_rule_and_clamping():
    angles = np.array([[7.5, 7.5, 7.5], [30.0, -30.0, 0.0]])
    measures = np.array([[0.05, 0.30, 0.04], [0.30, 0.30, 0.60]])   # subject's right eye closed in row 0
    mirrored = to_poses(angles, measures, PoseMapping())
    np.testing.assert_allclose(mirrored[0], [0.5, -0.5, -0.5, 1.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(mirrored[1], [1.0, 1.0, 0.0, 0.0, 0.0, 1.0], atol=1e-6)   # clamped
    copied = to_poses(angles, measures, PoseMapping(mirror=False))
    np.testing.assert_allclose(copied[0], [0.5, 0.5, 0.5, 0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(to_poses(angles[:1], measures[:1], PoseMapping(gain=2))[0, :3], [1, -1, -1])


def test_hold_last_and_zero_lag_smoothing():
    values = np.array([[1.0], [2.0], [9.0], [9.0], [3.0]])
    found = np.array([False, True, False, False, True])
    np.testing.assert_array_equal(hold_last(values, found)[:, 0], [2, 2, 2, 2, 3])
    pulse = np.zeros((101, 1))
    pulse[50] = 1.0
    smooth = forward_backward(pulse, fps=20, seconds=0.1)[:, 0]
    np.testing.assert_allclose(smooth, smooth[::-1], atol=1e-10)      # symmetric: no lag
    assert smooth[50] < 1.0 and smooth.argmax() == 50
    np.testing.assert_allclose(forward_backward(np.full((9, 2), 0.3), 20, 0.2), 0.3)


def test_animate_motion_reads_the_face_column(tmp_path):
    p = tmp_path / "poses.csv"
    p.write_text("head_x,head_y,neck_z,left_eye,right_eye,mouth,face\n0.1,0,0,0,0,1,1\n0.1,0,0,0,0,1,0\n")
    np.testing.assert_allclose(read_csv(p), [[0.1, 0, 0, 0, 0, 1]] * 2)


# ---------------------------------------------------------------------------- real photos


def test_roll_through_mp4_is_within_a_degree_after_calibration(tmp_path, capsys):
    pytest.importorskip("mediapipe", reason='face tracking needs the [track] extra: pip install -e ".[track]"')
    face = astronaut_face()
    truth = [0.0] * 10 + [10.0] * 5 + [-10.0] * 5 + [25.0] * 5 + [-25.0] * 5
    clip = write_mp4(tmp_path / "roll.mp4", [rolled_frame(face, a) for a in truth], fps=10)
    out = tmp_path / "poses.csv"
    # gain 0.5 keeps ±25° inside neck_z's ±15° range; neutral: the median of the first second
    rc = cli.main(["track", str(clip), "-o", str(out), "--gain", "0.5", "--smooth", "0"])
    assert rc == 0, capsys.readouterr().err
    poses, face_col = _read_track_csv(out)
    assert poses.shape == (30, 6) and face_col.all()           # also across the jumps (re-detection)
    assert np.all(np.abs(poses[:10, :3]) < 0.04)                   # neutral ≈ 0 (0.6° before gain)
    seen_roll = -poses[:, 2] * 15 / 0.5                            # mirror: neck_z = −tilt
    for start in (10, 15, 20, 25):                                 # the middle of each held angle
        mid = slice(start + 1, start + 4)
        assert face_col[mid].all()
        np.testing.assert_allclose(seen_roll[mid], truth[start], atol=1.0)
        assert np.all(np.abs(poses[mid, :2]) < 0.15)               # in-plane: no pitch or yaw


def test_yaw_and_pitch_signs_on_a_turned_surface():
    """The photo painted on an ellipsoid turned by known angles: a flat photo gives small angles,
    so this checks signs and order, not size."""
    tracker = _tracker()
    face = astronaut_face()[20:220, 40:216]
    cases = {(0, 0): None, (20, 0): None, (30, 0): None, (-20, 0): None, (0, 15): None, (0, -15): None}
    lms = {k: tracker(turned_frame(face, *k, radius=130)) for k in cases}
    assert all(v is not None for v in lms.values())
    angle = {k: g.rotation_to_angles(g.head_rotation(lms[(0, 0)], v)) for k, v in lms.items()}
    assert angle[(20, 0)][1] > 1.5 and angle[(-20, 0)][1] < -1.5         # turn toward the image's left
    assert angle[(30, 0)][1] > angle[(20, 0)][1]
    assert angle[(0, 15)][0] > 1.0 and angle[(0, -15)][0] < -1.0          # face tilts up / down
    pose = to_poses(np.array([angle[(20, 0)], angle[(0, 15)]]), np.full((2, 3), 0.3), PoseMapping())
    assert pose[0, 1] < 0 and pose[1, 0] > 0      # mirrored: a turn to the image's left -> head_y < 0


def test_mouth_closed_on_grace_hopper_open_on_the_astronaut():
    tracker = _tracker()
    closed = g.face_measures(tracker(grace_hopper()))
    parted = g.face_measures(tracker(astronaut_face()))
    m = PoseMapping()
    mouth = to_poses(np.zeros((2, 3)), np.stack([closed, parted]), m)[:, 5]
    assert mouth[0] < 0.05 and mouth[1] > 0.25
    assert np.all(closed[:2] > m.eye_open) and np.all(parted[:2] > m.eye_open)   # both photos: eyes open


def _close_eye(img: np.ndarray, lm: np.ndarray, eye: tuple) -> np.ndarray:
    """Pull the upper lid down onto the lower one: the rows from above the eye to the upper lid are
    stretched down to the lower lid, over the eye's width."""
    outer, inner, pairs = eye
    x0, x1 = sorted((lm[outer, 0], lm[inner, 0]))
    upper = max(lm[u, 1] for u, _ in pairs)
    lower = max(lm[d, 1] for _, d in pairs)
    gap = lower - upper
    top = upper - 2.5 * gap
    out = img.copy()
    rows = np.arange(int(np.floor(top)), int(np.ceil(lower)) + 2)
    src = top + (rows - top) * (upper - top) / (lower + 1 - top)
    cols = slice(int(x0 - 0.15 * (x1 - x0)), int(x1 + 0.15 * (x1 - x0)) + 1)
    out[rows, cols] = img[np.clip(np.round(src).astype(int), 0, img.shape[0] - 1), cols]
    return out


def test_closing_the_subjects_right_eye_closes_left_eye_with_mirror():
    """THA1's mirror rule: the subject's RIGHT eye (the image's left) drives left_eye (index 3)."""
    tracker = _tracker()
    photo = rolled_frame(astronaut_face(), 0.0, canvas=(512, 512), scale=2.0)
    lm = tracker(photo)
    edited = _close_eye(photo, lm, g.RIGHT_EYE)
    after = g.face_measures(tracker(edited))
    before = g.face_measures(lm)
    assert after[0] < 0.6 * before[0] and after[1] > 0.8 * before[1]   # only the edited side drops
    mirrored = to_poses(np.zeros((2, 3)), np.stack([before, after]), PoseMapping())
    assert mirrored[1, 3] - mirrored[0, 3] > 0.3 and mirrored[1, 3] > mirrored[1, 4] + 0.3
    copied = to_poses(np.zeros((1, 3)), after[None], PoseMapping(mirror=False))
    assert copied[0, 4] > copied[0, 3] + 0.3                               # without mirror: right_eye


def test_frames_without_a_face_hold_the_pose_and_are_reported(tmp_path, capsys):
    pytest.importorskip("mediapipe", reason='face tracking needs the [track] extra: pip install -e ".[track]"')
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    face = astronaut_face()
    frames = [rolled_frame(face, 0)] * 3 + [rolled_frame(face, 10)] * 2 + [blank_frame()] * 2 \
        + [rolled_frame(face, 0)] * 2
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"f{i:03d}.png")
    out = tmp_path / "poses.csv"
    rc = cli.main(["track", str(folder), "-o", str(out), "--smooth", "0", "--preview", str(tmp_path / "p.png")])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    poses, face_col = _read_track_csv(out)
    np.testing.assert_array_equal(face_col, [1, 1, 1, 1, 1, 0, 0, 1, 1])
    np.testing.assert_array_equal(poses[5], poses[4])
    np.testing.assert_array_equal(poses[6], poses[4])
    assert abs(poses[4, 2] * 15 + 10) < 1.5
    assert "no face in 2 (frames 5, 6)" in cap.out
    with Image.open(tmp_path / "p.png") as im:
        assert im.size == (4 * 256, 3 * (256 + 16))           # 9 frames, 4 per row, labelled


def test_bad_inputs_are_one_line_errors_and_write_nothing(tmp_path, capsys):
    pytest.importorskip("mediapipe", reason='face tracking needs the [track] extra: pip install -e ".[track]"')
    out = tmp_path / "poses.csv"
    out.write_text("keep me\n")
    noface = write_mp4(tmp_path / "empty.mp4", [blank_frame()] * 4, fps=8)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video at all" * 50)
    cases = [(noface, "no face found in any of its 4 frames"), (junk, "junk.mp4: "),
             (tmp_path / "missing.mp4", "no such video file or image folder")]
    for src, message in cases:
        rc = cli.main(["track", str(src), "-o", str(out)])
        err = capsys.readouterr().err
        assert rc == 1 and message in err, err
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("thactl: error: "), err
        assert out.read_text() == "keep me\n"
    rc = cli.main(["track", str(noface), "-o", str(out), "--eye-open", "0.05"])
    assert rc == 1 and "eye thresholds" in capsys.readouterr().err


def test_neutral_option_parses():
    assert Neutral.parse("clip").frames == "clip" and Neutral.parse("7").frames == 7
    with pytest.raises(ValueError, match="use start, clip or a frame number"):
        Neutral.parse("middle")


def test_preview_gif_has_one_labelled_frame_per_video_frame(tmp_path):
    from PIL import Image

    from tracking.frames import open_frames
    from tracking.preview import write_preview

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(blank_frame()).save(folder / f"{i}.png")
    rng = np.random.default_rng(0)
    landmarks = (rng.random((3, 478, 3)) * (200, 150, 1) + (220, 160, 0)).astype(np.float32)
    out = write_preview(tmp_path / "seen.gif", open_frames(folder), landmarks, np.array([True, False, True]),
                        np.zeros((3, 6), np.float32))
    with Image.open(out) as im:
        assert im.n_frames == 3 and im.size == (256, 256 + 16)
        im.seek(0)
        first = np.asarray(im.convert("RGB"))
    assert np.any(np.all(first[:256] == (0, 255, 0), axis=-1))       # the landmarks are drawn
    with pytest.raises(ValueError, match="must be a .png sheet or a .gif"):
        write_preview(tmp_path / "seen.jpg", open_frames(folder), landmarks, np.ones(3, bool), np.zeros((3, 6)))
