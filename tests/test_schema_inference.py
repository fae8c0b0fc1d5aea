"""`pose`, `animate`, `eval` and `export` with weights trained on tha3 data (45 parameters): poses by
name (`--set`, `--list-parameters`), THA1's six numbers mapped by the schema, built-in motions and
CSV files in the schema, the full-chain evaluation split by the schema, and an ONNX graph with a
(B, 45) pose input. Tiny networks trained in seconds on a tiny real tha3 render (as in
tests/test_schema_render.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli import main as cli_main
from conftest import render_tha3_mikus
from core.poseschema import load_schema
from inference import motion

TINY = ["--base-channels", 8, "--num-downsample", 2, "--num-res-blocks", 1, "--batch-size", 4,
        "--examples", 8, "--val-every", 8, "--val-examples", 4, "--quiet"]
THA3 = load_schema("tha3")


def run_cli(*args) -> int:
    return cli_main([str(a) for a in args])


@pytest.fixture(scope="module")
def tha3_data(shared_models, tmp_path_factory):
    """16 training examples of miku_v2 and 8 validation examples of miku at 64 px under tha3."""
    return render_tha3_mikus(shared_models, tmp_path_factory, count=16, val_count=8, size=64)


@pytest.fixture(scope="module")
def weights(tha3_data, tmp_path_factory) -> Path:
    """A folder with a tiny morpher and rotator trained on the tha3 data (they record the schema)."""
    runs = tmp_path_factory.mktemp("runs")
    folder = tmp_path_factory.mktemp("w3")
    for kind in ("morpher", "rotator"):
        assert run_cli("train", kind, "--data", tha3_data, "--out", runs / kind, *TINY) == 0
        shutil.copy(runs / kind / f"{kind}.safetensors", folder / f"{kind}.safetensors")
    return folder


@pytest.fixture(scope="module")
def drawing(tha3_data, tmp_path_factory) -> Path:
    """The rest image of the validation character: a real render as the input drawing."""
    from dataset.shards import ShardReader

    with ShardReader(sorted((tha3_data / "validation").glob("shard-*.h5"))[0]) as r:
        img = np.asarray(r.rest_image(0))
    path = tmp_path_factory.mktemp("img") / "miku.png"
    Image.fromarray(img, "RGBA").save(path)
    return path


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGBA" and im.size == (64, 64)
        return np.asarray(im)


def _one_error_line(capsys) -> str:
    """The one error line on stderr (tiny networks also get the one-line "look untrained" warning)."""
    err = [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("thactl: warning: ")]
    assert len(err) == 1 and err[0].startswith("thactl: error: "), err
    return err[0]


# ------------------------------------------------------------------------------------- pose


def test_pose_by_name_and_thas_six_numbers_through_the_schema(weights, drawing, tmp_path, capsys):
    base = ["pose", drawing, "--weights", weights, "--device", "cpu"]
    assert run_cli(*base, "--set", "eye_wink_left=0", "-o", tmp_path / "rest.png") == 0, capsys.readouterr().err
    assert run_cli(*base, "--set", "eye_wink_left=1", "-o", tmp_path / "wink.png") == 0, capsys.readouterr().err
    assert (_png(tmp_path / "wink.png") != _png(tmp_path / "rest.png")).any()
    # --pose HX HY NZ LE RE M is mapped to head_x, head_y, neck_z, eye_wink_left/right, mouth_aaa; --set wins
    assert run_cli(*base, "--pose", 0, 0.5, 0, 1, 0, 0.25, "--set", "mouth_aaa=0.75", "-o", tmp_path / "a.png") == 0
    assert run_cli(*base, "--set", "head_y=0.5", "--set", "eye_wink_left=1", "--set", "mouth_aaa=0.75",
                   "-o", tmp_path / "b.png") == 0
    np.testing.assert_array_equal(_png(tmp_path / "a.png"), _png(tmp_path / "b.png"))
    capsys.readouterr()
    assert run_cli("pose", "--weights", weights, "--list-parameters") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("tha3: 45 pose parameters") and len(lines) == 46
    assert lines[1 + THA3.index("head_y")].split()[:5] == [str(THA3.index("head_y")), "head_y", "[-1,", "1]", "rest"]


def test_pose_bad_names_and_values_are_one_line(weights, drawing, tmp_path, capsys):
    base = ["pose", drawing, "--weights", weights, "--device", "cpu", "-o", tmp_path / "o.png"]
    assert run_cli(*base, "--set", "eye_wink_lft=1") == 1
    line = _one_error_line(capsys)
    assert "no parameter 'eye_wink_lft'" in line and "eye_wink_left" in line and "--list-parameters" in line
    assert run_cli(*base, "--set", "eye_wink_left=2") == 1
    assert "eye_wink_left = 2 is outside [0, 1]" in _one_error_line(capsys)
    assert run_cli(*base, "--set", "head_y") == 1
    assert "expected NAME=VALUE" in _one_error_line(capsys)
    assert run_cli(*base) == 1
    assert "--pose" in (line := _one_error_line(capsys)) and "--set" in line
    assert not (tmp_path / "o.png").exists()


def test_pose_set_names_thas_parameters_for_tha1_weights(tmp_path, capsys):
    from tiny_networks import S, write_disc_drawing, write_tiny_weights

    w = write_tiny_weights(tmp_path / "w1", 5)
    src = write_disc_drawing(tmp_path / "d.png", S)
    args = ["pose", src, "--weights", w, "--device", "cpu"]
    assert run_cli(*args, "--pose", 0, 0.3, 0, 1, 0, 1, "-o", tmp_path / "a.png") == 0
    assert run_cli(*args, "--set", "head_y=0.3", "--set", "left_eye=1", "-o", tmp_path / "b.png") == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))
    capsys.readouterr()
    assert run_cli(*args, "--set", "eye_wink_left=1", "-o", tmp_path / "c.png") == 1
    assert "the tha1 schema has no parameter 'eye_wink_left'" in _one_error_line(capsys)


# ---------------------------------------------------------------------------------- animate


def test_animate_sweep_moves_every_parameter_and_saves_the_schemas_names(weights, drawing, tmp_path, capsys):
    out, saved = tmp_path / "sweep.gif", tmp_path / "poses.csv"
    assert run_cli("animate", drawing, "--weights", weights, "--device", "cpu", "-o", out, "--fps", 2,
                   "--save-poses", saved) == 0, capsys.readouterr().err
    per = 2                                   # 1.2 s per parameter at 2 frames/s, at least 2
    n = 45 * per
    assert f"{n} frames" in capsys.readouterr().out
    with Image.open(out) as im:
        total = 0
        for k in range(im.n_frames):
            im.seek(k)
            total += im.info["duration"]
        assert total == n * 500
    lines = saved.read_text().splitlines()
    assert lines[0].split(",") == list(THA3.names) and len(lines) == 1 + n
    poses = motion.read_csv(saved, THA3)
    for i in range(45):                       # segment i moves parameter i only
        moving = np.nonzero(np.ptp(poses[per * i:per * (i + 1)], axis=0) > 0)[0]
        assert moving.tolist() == [i]
    assert THA3.problem(poses, batch=True) is None


def test_animate_csv_by_name_and_bad_columns(weights, drawing, tmp_path, capsys):
    m = tmp_path / "m.csv"
    m.write_text("# two frames\nhead_y,eye_wink_left\n0.5,0\n0,1\n")
    saved = tmp_path / "used.csv"
    assert run_cli("animate", drawing, "--weights", weights, "--device", "cpu", "-o", tmp_path / "a.gif",
                   "--motion", m, "--save-poses", saved) == 0, capsys.readouterr().err
    used = motion.read_csv(saved, THA3)
    want = np.repeat(THA3.rest[None], 2, 0)
    want[0, THA3.index("head_y")], want[1, THA3.index("eye_wink_left")] = 0.5, 1.0
    np.testing.assert_array_equal(used, want)
    capsys.readouterr()
    m.write_text("head_y,eye_wink_lft\n0.5,0\n")
    assert run_cli("animate", drawing, "--weights", weights, "--device", "cpu", "-o", tmp_path / "b.gif",
                   "--motion", m) == 1
    line = _one_error_line(capsys)
    assert str(m) in line and "column 'eye_wink_lft'" in line and "eye_wink_left" in line


# ------------------------------------------------------------------------------------ motion


def test_csv_without_header_takes_all_parameters_or_thas_six(tmp_path):
    full = tmp_path / "full.csv"
    pose = THA3.rest.copy()
    pose[THA3.index("mouth_ooo")] = 0.5
    full.write_text(",".join(f"{x:g}" for x in pose) + "\n")
    np.testing.assert_array_equal(motion.read_csv(full, THA3), pose[None])
    six = tmp_path / "six.csv"
    six.write_text("0,0.5,0,1,0,0.25\n")
    np.testing.assert_array_equal(motion.read_csv(six, THA3), THA3.from_tha1([[0, 0.5, 0, 1, 0, 0.25]]))
    tracked = tmp_path / "tracked.csv"           # what `thactl track` writes: THA1's names and `face`
    tracked.write_text("head_x,head_y,neck_z,left_eye,right_eye,mouth,face\n0,0.5,0,1,0,0.25,1\n")
    np.testing.assert_array_equal(motion.read_csv(tracked, THA3), THA3.from_tha1([[0, 0.5, 0, 1, 0, 0.25]]))
    bad = tmp_path / "bad.csv"
    bad.write_text("0,0,0\n")
    with pytest.raises(motion.MotionError, match="line 1: expected 45 numbers .* or 6 .*got 3 columns"):
        motion.read_csv(bad, THA3)
    bad.write_text("mouth_ooo\n1.5\n")
    with pytest.raises(motion.MotionError, match="line 2: mouth_ooo = 1.5 is outside"):
        motion.read_csv(bad, THA3)


def test_blink_and_talk_move_the_schemas_eyes_and_mouth():
    def moving(poses):
        return {THA3.names[i] for i in np.nonzero(np.ptp(poses, axis=0))[0]}

    assert moving(motion.blink(3, 20, THA3)) == {"eye_wink_left", "eye_wink_right"}
    talk = motion.talk(4, 20, THA3)
    assert moving(talk) == {"eye_wink_left", "eye_wink_right", "head_x", "head_y", "neck_z",
                            "mouth_aaa", "mouth_iii", "mouth_uuu", "mouth_eee", "mouth_ooo"}
    vowels = talk[:, [THA3.index(v) for v in motion.VOWELS]]
    assert ((vowels > 0).sum(axis=1) <= 1).all()      # one mouth shape at a time
    assert THA3.problem(talk, batch=True) is None
    tha1 = load_schema("tha1")
    for spec in ("sweep", "blink", "talk"):           # THA1's motions are what they were without a schema
        assert np.array_equal(motion.get_motion(spec, fps=7, schema=tha1), motion.get_motion(spec, fps=7))


def test_animate_video_maps_the_tracked_face_through_the_schema(weights, drawing, tmp_path, capsys):
    pytest.importorskip("mediapipe", reason='face tracking needs the [track] extra: pip install -e ".[track]"')
    from faces import astronaut_face, rolled_frame, write_mp4

    face = astronaut_face()
    clip = write_mp4(tmp_path / "face.mp4", [rolled_frame(face, a) for a in (0, 0, 0, 0, 12, 12, -12, -12)], fps=8)
    used, tracked = tmp_path / "used.csv", tmp_path / "tracked.csv"
    assert run_cli("animate", drawing, "--weights", weights, "--device", "cpu", "--video", clip,
                   "-o", tmp_path / "v.gif", "--save-poses", used) == 0, capsys.readouterr().err
    assert run_cli("track", clip, "-o", tracked) == 0
    six = np.loadtxt(tracked, delimiter=",", skiprows=1)[:, :6]
    assert used.read_text().splitlines()[0].split(",") == list(THA3.names)
    np.testing.assert_allclose(motion.read_csv(used, THA3), THA3.from_tha1(six), atol=1e-5)


# ------------------------------------------------------------------------------- eval, export


def test_eval_on_tha3_data_and_a_schema_mismatch(weights, tha3_data, tmp_path, capsys):
    out = tmp_path / "ev"
    assert run_cli("eval", "--data", tha3_data, "--split", "validation", "--weights", weights,
                   "--device", "cpu", "--out", out) == 0, capsys.readouterr().err
    rows = json.loads((out / "eval-validation.json").read_text())["rows"]
    assert {r["row"] for r in rows} >= {"morpher", "rotator/pumarola", "PU", "ZH"}
    assert all(np.isfinite(r[m]) for r in rows for m in ("rmse_tha", "rmse_srgb01", "ssim"))
    assert all(r["n"] == 8 for r in rows)
    from tiny_networks import write_tiny_weights

    tha1 = write_tiny_weights(tmp_path / "w1", 2)
    capsys.readouterr()
    assert run_cli("eval", "--data", tha3_data, "--split", "validation", "--weights", tha1, "--device", "cpu",
                   "--out", out) == 1
    line = _one_error_line(capsys)
    assert "the data's pose schema is tha3 (45 parameters)" in line and "tha1 (6 parameters)" in line


def test_export_onnx_takes_the_schemas_pose_and_names_it(weights, drawing, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "p3.onnx"
    assert run_cli("export", "--weights", weights, "--onnx", out) == 0, capsys.readouterr().err
    assert "onnxruntime matches torch" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["pose_schema"] == "tha3" and json.loads(meta["pose_names"]) == list(THA3.names)
    from dataset.imageconv import tensor_to_uint8, uint8_to_tensor
    import torch

    pose = motion.pose_from_settings(THA3, None, ["eye_wink_left=1", "head_y=0.5"])
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": uint8_to_tensor(_png(drawing))[None].numpy(), "pose": pose[None]})[0]
    assert run_cli("pose", drawing, "--weights", weights, "--device", "cpu", "--set", "eye_wink_left=1",
                   "--set", "head_y=0.5", "-o", tmp_path / "ref.png") == 0
    ref = _png(tmp_path / "ref.png").astype(int)
    assert np.abs(tensor_to_uint8(torch.from_numpy(got))[0].astype(int) - ref).max() <= 1
