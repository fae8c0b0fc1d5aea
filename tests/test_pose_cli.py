"""`thactl pose` / `animate` / `export` with tiny saved networks: outputs of the right size, frame
count and format, the same pixels as a direct forward pass, and one clear message per bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cli
from inference import motion
from inference.drawing import check_image, fit_to_square
from inference.runner import PoserRunner
from core.pose import POSE_HIGH, POSE_LOW, REST_POSE
from tiny_networks import S, write_tiny_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("weights"), 7, flow_std=0.02)


def _character(s=S, w=None, dx=0, dy=0) -> np.ndarray:
    """A head-like disc in the middle box, on a transparent background."""
    w = w or s
    yy, xx = np.mgrid[0:s, 0:w]
    img = np.zeros((s, w, 4), np.uint8)
    disc = (yy - s / 2 - dy) ** 2 + (xx - w / 2 - dx) ** 2 < (s / 4) ** 2
    img[disc] = (230, 180, 160, 255)
    img[disc & (yy < s / 2 - dy)] = (60, 90, 200, 255)  # "hair"
    return img


def _png(path: Path, arr: np.ndarray, mode="RGBA") -> Path:
    Image.fromarray(arr, mode).save(path)
    return path


def _direct(weights: Path, img: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Reference: the models' own Poser, no cache, no batching."""
    from dataset.imageconv import tensor_to_uint8, uint8_to_tensor
    from models import Poser
    from models.io import load_weights

    p = Poser(load_weights(weights, "morpher"), load_weights(weights, "rotator"),
              load_weights(weights, "combiner")).eval()
    x = uint8_to_tensor(img)[None].expand(len(poses), -1, -1, -1)
    with torch.inference_mode():
        return tensor_to_uint8(p(x, torch.from_numpy(np.asarray(poses, np.float32)))[0])


# ------------------------------------------------------------------------------------- pose


def test_pose_writes_rgba_png_equal_to_direct_forward(weights, tmp_path, capsys):
    src = _png(tmp_path / "in.png", _character())
    out = tmp_path / "out.png"
    pose = [0.3, -0.5, 0.2, 1.0, 0.0, 0.4]
    rc = cli.main(["pose", str(src), "--weights", str(weights), "--pose", *map(str, pose), "-o", str(out),
                   "--device", "cpu"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert [w for w in cap.err.splitlines() if "warning" in w] == [cap.err.splitlines()[0]]
    assert "weights look untrained" in cap.err  # tiny random weights; nothing to say about the drawing
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == (S, S)
        got = np.asarray(im)
    np.testing.assert_array_equal(got, _direct(weights, _character(), np.array([pose]))[0])


def test_pose_fit_and_size_error(weights, tmp_path, capsys):
    src = _png(tmp_path / "wide.png", _character(40, 56))
    out = tmp_path / "o.png"
    rc = cli.main(["pose", str(src), "--weights", str(weights), "--pose", "0", "0", "0", "0", "0", "1",
                   "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "image is 56x40, the networks take 32x32" in err and "--fit" in err
    assert "Traceback" not in err and not out.exists()
    rc = cli.main(["pose", str(src), "--weights", str(weights), "--pose", "0", "0", "0", "0", "0", "1",
                   "-o", str(out), "--fit"])
    cap = capsys.readouterr()
    assert rc == 0 and "fitted 56x40 to 32x32" in cap.err
    with Image.open(out) as im:
        assert im.size == (S, S) and im.mode == "RGBA"


def test_fit_keeps_content_centred():
    img = _character(40, 56)
    f = fit_to_square(img, S)
    assert f.shape == (S, S, 4)
    a = f[..., 3].astype(float)
    ys, xs = np.nonzero(a)
    cy = (a.sum(1) * (np.arange(S) + 0.5)).sum() / a.sum()
    cx = (a.sum(0) * (np.arange(S) + 0.5)).sum() / a.sum()
    assert abs(cx - S / 2) < 1 and abs(cy - S / 2) < 1
    assert f[0, 0, 3] == 0 and f[-1, -1, 3] == 0  # padding is transparent


def test_pose_no_alpha_error(weights, tmp_path, capsys):
    src = _png(tmp_path / "rgb.png", _character()[..., :3].copy(), "RGB")
    rc = cli.main(["pose", str(src), "--weights", str(weights), "--pose", "0", "0", "0", "0", "0", "1",
                   "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == 1 and f"{src}: no alpha channel" in err


def test_pose_dirty_transparent_pixels_fixed_with_warning(weights, tmp_path, capsys):
    clean = _character()
    dirty = clean.copy()
    dirty[clean[..., 3] == 0, :3] = (255, 0, 255)
    src = _png(tmp_path / "dirty.png", dirty)
    out = tmp_path / "o.png"
    pose = ["0", "0.5", "0", "0", "0", "1"]
    rc = cli.main(["pose", str(src), "--weights", str(weights), "--pose", *pose, "-o", str(out)])
    err = capsys.readouterr().err
    n = int((clean[..., 3] == 0).sum())
    assert rc == 0 and f"{n} fully transparent pixels had non-zero RGB; set them to 0" in err
    with Image.open(out) as im:
        got = np.asarray(im)
    np.testing.assert_array_equal(got, _direct(weights, clean, np.array([list(map(float, pose))]))[0])


def test_pose_head_off_centre_warns(weights, tmp_path, capsys):
    img = np.zeros((S, S, 4), np.uint8)
    img[:6, 22:, :] = 200  # a blob in the top-right corner
    src = _png(tmp_path / "corner.png", img)
    rc = cli.main(["pose", str(src), "--weights", str(weights), "--pose", "0", "0", "0", "0", "0", "1",
                   "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == 0 and "middle 16x16 box" in err and "centre the head horizontally" in err


def test_pose_other_bad_inputs(weights, tmp_path, capsys):
    args = ["--pose", "0", "0", "0", "0", "0", "1", "-o", str(tmp_path / "o.png")]
    rc = cli.main(["pose", str(tmp_path / "missing.png"), "--weights", str(weights), *args])
    assert rc == 1 and "missing.png: image file not found" in capsys.readouterr().err
    empty = _png(tmp_path / "empty.png", np.zeros((S, S, 4), np.uint8))
    rc = cli.main(["pose", str(empty), "--weights", str(weights), *args])
    assert rc == 1 and "fully transparent" in capsys.readouterr().err
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    rc = cli.main(["pose", str(junk), "--weights", str(weights), *args])
    assert rc == 1 and "not a readable image" in capsys.readouterr().err
    src = _png(tmp_path / "ok.png", _character())
    rc = cli.main(["pose", str(src), "--weights", str(tmp_path / "nowhere"), *args])
    assert rc == 1 and "weights folder not found" in capsys.readouterr().err
    rc = cli.main(["pose", str(src), "--weights", str(weights), "--pose", "0", "2", "0", "0", "0", "1",
                   "-o", str(tmp_path / "o.png")])
    assert rc == 2 and "head_y = 2 is outside [-1, 1]" in capsys.readouterr().err
    for bad_out in ("o.jpg", "o"):  # both were Pillow tracebacks
        rc = cli.main(["pose", str(src), "--weights", str(weights), "--pose", "0", "0", "0", "0", "0", "1",
                       "-o", str(tmp_path / bad_out)])
        err = capsys.readouterr().err
        assert rc == 1 and "output must end in .png" in err and "Traceback" not in err
        assert not (tmp_path / bad_out).exists()
    a_dir = tmp_path / "dir.png"
    a_dir.mkdir()
    for argv in (["pose", str(src), "--weights", str(weights), "--pose", "0", "0", "0", "0", "0", "1",
                  "-o", str(a_dir)],
                 ["animate", str(src), "--weights", str(weights), "-o", str(a_dir.with_suffix(".gif"))],
                 ["animate", str(src), "--weights", str(weights), "-o", str(tmp_path / "a.gif"),
                  "--save-poses", str(a_dir)]):
        a_dir.with_suffix(".gif").mkdir(exist_ok=True)
        rc = cli.main(argv)  # an existing folder as the output was an IsADirectoryError traceback
        err = capsys.readouterr().err
        assert rc == 2 and "is a directory" in err and "Traceback" not in err


def test_check_image_dirty_count_and_no_change_when_clean():
    img = _character()
    out, warns = check_image(img, S)
    assert warns == [] and np.array_equal(out, img)


# ---------------------------------------------------------------------------------- runner


def test_runner_skips_morpher_for_repeated_expressions(weights):
    runner = PoserRunner.from_weights(weights, device="cpu", batch_size=4)
    img = _character()
    runner.set_image(img)
    poses = np.zeros((10, 6), np.float32)
    poses[:, 5] = 1.0
    poses[:, 1] = np.linspace(-1, 1, 10)
    poses[7:, 3] = 1.0  # a second expression
    out = runner.run(poses)
    assert out.shape == (10, S, S, 4) and runner.morpher_runs == 2 and runner.frames == 10
    # other batch sizes than the reference's: float rounding may move a value by one level
    assert np.abs(out.astype(int) - _direct(weights, img, poses).astype(int)).max() <= 1
    assert runner.fps > 0


# ---------------------------------------------------------------------------------- animate


def test_animate_sweep_gif(weights, tmp_path, capsys):
    src = _png(tmp_path / "in.png", _character())
    out = tmp_path / "a.gif"
    rc = cli.main(["animate", str(src), "--weights", str(weights), "-o", str(out), "--fps", "5",
                   "--save-poses", str(tmp_path / "poses.csv")])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    n = len(motion.get_motion("sweep", fps=5))
    assert n == 36
    with Image.open(out) as im:
        assert im.format == "GIF" and im.size == (S, S) and im.info.get("loop") == 0
        first = np.asarray(im.convert("RGB"))
        # Pillow merges identical consecutive frames into one longer frame: the timing is kept
        total = 0
        for k in range(im.n_frames):
            im.seek(k)
            total += im.info["duration"]
        assert 2 <= im.n_frames <= n and total == n * 200
    from inference.animation import composite

    net = _direct(weights, _character(), motion.get_motion("sweep", fps=5)[:1])
    on_white, on_black = composite(net, (255, 255, 255))[0], composite(net, (0, 0, 0))[0]
    assert np.abs(first.astype(int) - on_white.astype(int)).mean() < 5  # 256-colour palette error only
    assert np.abs(first.astype(int) - on_black.astype(int)).mean() > 20
    assert "frames/s on cpu" in cap.out and f"for {n} frames" in cap.out
    np.testing.assert_allclose(motion.read_csv(tmp_path / "poses.csv"), motion.get_motion("sweep", fps=5), atol=1e-5)


def test_animate_csv_transparent_gif(weights, tmp_path, capsys):
    src = _png(tmp_path / "in.png", _character())
    csvp = tmp_path / "m.csv"
    csvp.write_text("head_x,head_y,neck_z,left_eye,right_eye,mouth\n# comment\n0,0,0,0,0,1\n"
                    "0.5,0,0,0,0,1\n0,0.5,0,1,1,0\n\n0,0,-0.5,0,0,0.5\n")
    out = tmp_path / "t.gif"
    rc = cli.main(["animate", str(src), "--weights", str(weights), "-o", str(out), "--motion", str(csvp),
                   "--background", "transparent"])
    assert rc == 0, capsys.readouterr().err
    with Image.open(out) as im:
        assert im.n_frames == 4 and "transparency" in im.info  # 4 different poses
        rgba = np.asarray(im.convert("RGBA"))
    assert rgba[0, 0, 3] == 0  # background stays transparent


def test_animate_bad_inputs(weights, tmp_path, capsys):
    src = _png(tmp_path / "in.png", _character())
    bad = tmp_path / "bad.csv"
    bad.write_text("0,0,0,0,0,1\n0,0,0,0,1\n")
    base = ["animate", str(src), "--weights", str(weights)]
    rc = cli.main(base + ["-o", str(tmp_path / "a.gif"), "--motion", str(bad)])
    assert rc == 1 and f"{bad}: line 2: expected 6 numbers" in capsys.readouterr().err
    bad.write_text("0,0,0,0,0,1\n0,0,x,0,0,1\n")
    rc = cli.main(base + ["-o", str(tmp_path / "a.gif"), "--motion", str(bad)])
    assert rc == 1 and f"{bad}: line 2: not a number" in capsys.readouterr().err
    bad.write_text("0,0,0,0,1.5,1\n")
    rc = cli.main(base + ["-o", str(tmp_path / "a.gif"), "--motion", str(bad)])
    assert rc == 1 and "line 1: right_eye = 1.5 is outside [0, 1]" in capsys.readouterr().err
    rc = cli.main(base + ["-o", str(tmp_path / "a.gif"), "--motion", str(tmp_path / "none.csv")])
    assert rc == 1 and "none.csv: motion file not found" in capsys.readouterr().err
    rc = cli.main(base + ["-o", str(tmp_path / "a.gif"), "--motion", "dance"])
    assert rc == 1 and "unknown motion 'dance'" in capsys.readouterr().err
    rc = cli.main(base + ["-o", str(tmp_path / "a.avi")])
    assert rc == 1 and "must end in .gif or .mp4" in capsys.readouterr().err


def test_animate_mp4(weights, tmp_path, capsys):
    src = _png(tmp_path / "in.png", _character())
    out = tmp_path / "a.mp4"
    rc = cli.main(["animate", str(src), "--weights", str(weights), "-o", str(out), "--motion", "blink",
                   "--seconds", "1", "--fps", "10"])
    err = capsys.readouterr().err
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        assert rc == 1 and "needs ffmpeg" in err and "imageio-ffmpeg" in err
        assert "animate:" not in err  # refused before any frame was rendered
        return
    assert rc == 0, err
    import imageio.v3 as iio

    frames = iio.imread(out, plugin="FFMPEG")  # checked once with imageio-ffmpeg 0.8.1 installed
    assert frames.shape[0] == 10 and frames.shape[1:3] == (S, S)


# ------------------------------------------------------------------------------------ motion


def test_builtin_motions():
    sw = motion.sweep(8)
    assert sw.shape == (48, 6) and sw.dtype == np.float32
    np.testing.assert_array_equal(sw[0], REST_POSE)
    for i in range(6):  # segment i moves parameter i only, over its whole range
        seg = sw[8 * i:8 * (i + 1)]
        moving = np.nonzero(np.ptp(seg, axis=0) > 0)[0]
        assert moving.tolist() == [i]
        assert np.ptp(seg[:, i]) >= (1.4 if i < 3 else 0.85)
    for m in (motion.blink(2, 10), motion.talk(2, 10)):
        assert m.shape == (20, 6)
        assert np.all(m >= POSE_LOW) and np.all(m <= POSE_HIGH)
    assert motion.blink(2, 10)[:, 3].max() > 0.9


# ------------------------------------------------------------------------------------ export


def test_export_onnx_matches_torch(weights, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "poser.onnx"
    rc = cli.main(["export", "--weights", str(weights), "--onnx", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert out.stat().st_size > 10_000 and "onnxruntime matches torch" in cap.out
    import onnxruntime as ort

    img = _character()
    pose = np.array([[0.2, -0.4, 0.1, 0.5, 0.0, 0.8]], np.float32)
    from dataset.imageconv import tensor_to_uint8, uint8_to_tensor

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": uint8_to_tensor(img)[None].numpy(), "pose": pose})[0]
    ref = _direct(weights, img, pose)
    assert np.abs(tensor_to_uint8(torch.from_numpy(got)).astype(int) - ref.astype(int)).max() <= 1


# --------------------------------------------------------------- the heuristic on real renders


def test_real_model_renders_pass_the_placement_check(shared_models, tmp_path, capsys):
    """Rest renders of real models (THA framing) get no placement warning: no false alarms."""
    from conftest import real_model_paths

    picks = [p for p in real_model_paths() if p.parent.name in ("animasa_miku_pmx_j3", "mokou_pmd",
                                                                 "mmd_default_pmd", "appearance_miku_pmx")]
    picks = [p for p in picks if p.stem.lower() in ("index", "mokou_a", "kaito", "miku")][:4]
    assert picks, "expected some of the shared models"
    for p in picks:
        out = tmp_path / f"{p.parent.name}-{p.stem}.png"
        assert cli.main(["preview", str(p), "--size", "128", "-o", str(out)]) == 0, capsys.readouterr().err
        with Image.open(out) as im:
            img = np.asarray(im.convert("RGBA"))
        fixed, warns = check_image(img, 128)
        assert warns == [], (p, warns)
        assert np.array_equal(fixed, img)  # the renderer already writes RGB 0 under alpha 0
        small, warns = check_image(img, 48, fit=True)  # resampling leaves no colour under alpha 0
        assert small.shape == (48, 48, 4) and len(warns) == 1 and warns[0].startswith("fitted 128x128 to 48x48")
        assert not np.any(small[small[..., 3] == 0, :3])
    # the same render pushed into a corner is flagged
    moved = np.zeros_like(img)
    moved[:64, 80:] = img[64:, :48]
    warns = check_image(moved, 128)[1]
    assert any("middle 64x64 box" in w for w in warns) and any("centre the head" in w for w in warns)
