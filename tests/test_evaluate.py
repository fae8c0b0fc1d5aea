"""Evaluation: SSIM/RMSE against stored reference values, perfect predictions, and `thactl eval`
on a tiny shard + tiny networks giving exactly the numbers of a direct recomputation."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from train import evaluate as ev

DATA = Path(__file__).parent / "data"
TINY = dict(image_size=32, base_channels=4, num_downsample=3, num_res_blocks=1)


# ------------------------------------------------------------------------------------ SSIM / RMSE


def _nchw01(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8.astype(np.float32) / 255.0).permute(0, 3, 1, 2)


def test_ssim_matches_stored_scikit_image_values():
    ref = np.load(DATA / "ssim_reference.npz")
    ours = ev.ssim(_nchw01(ref["a"]), _nchw01(ref["b"]), data_range=1.0).numpy()
    assert ours.shape == ref["ssim"].shape
    np.testing.assert_allclose(ours, ref["ssim"], atol=1e-5)  # float32 moments
    # the fixed pairs span the range, so the check is not trivial
    assert ref["ssim"].min() < 0.1 and ref["ssim"].max() == pytest.approx(1.0)


def test_ssim_matches_scikit_image_live_when_installed():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(5)
    a = rng.random((2, 37, 29, 4))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ours = ev.ssim(torch.from_numpy(a).permute(0, 3, 1, 2).float(),
                   torch.from_numpy(b).permute(0, 3, 1, 2).float()).numpy()
    theirs = [skm.structural_similarity(x, y, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                        sigma=1.5, use_sample_covariance=False) for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_ssim_window_and_constants():
    g = ev.gaussian_window()
    assert g.numel() == 11 and g.sum().item() == pytest.approx(1.0)
    assert g[5] == g.max() and torch.allclose(g, g.flip(0))
    assert (ev.SSIM_WINDOW, ev.SSIM_SIGMA, ev.SSIM_K1, ev.SSIM_K2) == (11, 1.5, 0.01, 0.03)
    with pytest.raises(ValueError, match="smaller than"):
        ev.ssim(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8))


def test_batched_scores_equal_one_by_one():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(3, 4, 24, 24, generator=g) * 2 - 1
    t = torch.rand(3, 4, 24, 24, generator=g) * 2 - 1
    batched = ev.score_images(p, t)
    for i in range(3):
        single = ev.score_images(p[i:i + 1], t[i:i + 1])
        for m in ev.METRICS:
            assert batched[m][i].item() == pytest.approx(single[m].item(), abs=1e-6)


def test_perfect_prediction_gives_rmse_0_and_ssim_1():
    t = torch.rand(2, 4, 32, 32) * 2 - 1
    s = ev.score_images(t.clone(), t)
    assert torch.all(s["rmse_tha"] == 0) and torch.all(s["rmse_srgb01"] < 1e-6)
    assert torch.allclose(s["ssim"], torch.ones(2), atol=1e-6)


def test_rmse_known_value_and_colour_round_trip():
    t = torch.zeros(1, 4, 16, 16)
    assert ev.rmse(t + 0.25, t).item() == pytest.approx(0.25)
    d = torch.zeros(1, 4, 16, 16)
    d[0, 3, :8] = 1.0  # half the alpha channel off by 1: sqrt(1/8)
    assert ev.rmse(d, t).item() == pytest.approx((1 / 8) ** 0.5)
    x = torch.rand(2, 4, 8, 8)
    assert torch.allclose(ev.tha_to_srgb01(ev.srgb01_to_tha(x)), x, atol=1e-5)
    # THA convention: 0 linear -> -1, sRGB 0.5 -> linear 0.2140 -> 2*0.2140-1
    v = ev.srgb01_to_tha(torch.full((1, 4, 1, 1), 0.5))
    assert v[0, 0, 0, 0].item() == pytest.approx(2 * 0.21404 - 1, abs=1e-4)
    assert v[0, 3, 0, 0].item() == pytest.approx(0.0)


# ------------------------------------------------------------------------------ changed region


def test_changed_region_is_the_thresholded_difference_dilated():
    rest = -torch.ones(1, 4, 16, 16)
    target = rest.clone()
    target[0, 1, 5, 7] = 0.0  # one pixel, one channel, far above 2/255
    target[0, 2, 12, 3] = -1 + 1e-6  # below the threshold: not a change
    mask = ev.changed_region(rest, target)
    assert mask.shape == (1, 1, 16, 16) and mask.dtype == torch.bool
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[5 - 2:5 + 3, 7 - 2:7 + 3] = True  # dilated by 2 px: a 5 x 5 square
    assert torch.equal(mask[0, 0], expected)
    assert torch.equal(ev.changed_region(rest, target, dilation=0)[0, 0], expected & (expected.cumsum(0) == 3)
                       & (expected.cumsum(1) == 3))
    assert not ev.changed_region(rest, rest).any()
    # the threshold is in sRGB [0, 1]: 3 uint8 levels of alpha count, 1 level does not
    for levels, changed in ((3, True), (1, False)):
        t = rest.clone()
        t[0, 3, 0, 0] = -1 + 2 * levels / 255
        assert bool(ev.changed_region(rest, t, dilation=0)[0, 0, 0, 0]) is changed


def test_region_errors_known_values_and_identity_figure():
    rest = torch.zeros(2, 4, 8, 8)
    target = rest.clone()
    target[:, :, 2:4, 2:6] = 0.5  # 8 changed pixels per image
    mask = ev.changed_region(rest, target, dilation=0)
    assert int(mask.sum()) == 16
    ident = ev.RegionMeter()
    ident.add(ev.region_error_sums(rest, target, mask))
    assert ident.l1() == pytest.approx(0.5) and ident.rmse() == pytest.approx(0.5)
    # a prediction that gets half the changed pixels right, and is wrong OUTSIDE the region (ignored)
    pred = target.clone()
    pred[:, :, 2:4, 2:4] = 0.0
    pred[:, :, 7, 7] = 1.0
    meter = ev.RegionMeter()
    meter.add(ev.region_error_sums(pred, target, mask))
    assert meter.l1() == pytest.approx(0.25) and meter.rmse() == pytest.approx(0.5 / 2 ** 0.5)
    assert meter.count == 2 * 8 * 4
    assert math.isnan(ev.RegionMeter().l1())


def test_morpher_region_ratio_of_copying_perfect_and_half_way_morphers():
    def paint(x, pose3):  # the "morph": a 2 x 4 patch takes the value pose3[:, 0]
        out = x.clone()
        out[:, :, 2:4, 2:6] = pose3[:, 0, None, None, None]
        return out

    rest = torch.zeros(5, 4, 8, 8)
    pose = torch.rand(5, 3) * 0.5 + 0.25
    target = paint(rest, pose)

    def morpher(weight):  # moves `weight` of the way from its input to the morph
        return lambda x, p: (x + weight * (paint(x, p) - x),)

    for weight, ratio in ((0.0, 1.0), (1.0, 0.0), (0.5, 0.5), (0.75, 0.25)):
        # batch=2 pools 2 + 2 + 1 examples
        assert ev.morpher_region_ratio(morpher(weight), rest, target, pose, batch=2) == pytest.approx(ratio)


def test_config_selection():
    assert ev.select_configs(None, True) == ["FU"]
    assert ev.select_configs(None, False) == ["PU", "ZH"]
    assert ev.select_configs("all", True) == ["PU", "ZH", "FU"]
    assert ev.select_configs("zhou", False) == ["ZH"]
    with pytest.raises(ev.TrainError, match="needs a combiner"):
        ev.select_configs("full", False)
    assert ev.tha1_variant_for("FU", "P", "L1") == "FU-P-L1"
    assert ev.tha1_variant_for("PU") == "PU-L1"


# ------------------------------------------------------------------------------ evaluate() loop


def _tiny_nets(seed=0):
    from models import Combiner, FaceMorpher, TwoAlgoFaceRotator

    torch.manual_seed(seed)
    m, r, c = FaceMorpher(**TINY), TwoAlgoFaceRotator(**TINY), Combiner(**TINY)
    torch.nn.init.normal_(r.flow.weight, std=0.02)  # a non-identity flow, so ZH differs from input
    return m.eval(), r.eval(), c.eval()


def _random_batches(n_batches=2, b=3, s=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        pose = torch.rand(b, 6, generator=g)
        pose[:, :3] = pose[:, :3] * 2 - 1
        out.append({k: torch.rand(b, 4, s, s, generator=g) * 2 - 1
                    for k in ("rest_image", "morphed_image", "posed_image")} | {"pose": pose})
    return out


def test_evaluate_perfect_networks_score_exactly():
    """Targets made from the networks' own outputs: every row has RMSE 0 and SSIM 1."""
    m, r, c = _tiny_nets()
    batches = _random_batches()
    with torch.inference_mode():
        for bt in batches:
            rot, expr = bt["pose"][:, :3], bt["pose"][:, 3:]
            bt["morphed_image"] = m(bt["rest_image"], expr)[0]
            pu, zh = r(bt["morphed_image"], rot)[:2]
            bt["posed_image"] = c(pu, zh, rot)[0]
    res = ev.evaluate(batches, m, r, c, configs=["FU"])
    for row in ("morpher", "rotator+combiner", "FU"):
        assert res.rows[row].n == 6
        assert res.rows[row].mean("rmse_tha") < 1e-6, row
        assert res.rows[row].mean("ssim") == pytest.approx(1.0, abs=1e-6), row
    assert res.rows["rotator/pumarola"].mean("rmse_tha") > 1e-3  # these paths are not the target


def test_evaluate_equals_direct_recomputation_and_limit():
    m, r, c = _tiny_nets()
    batches = _random_batches()
    res = ev.evaluate(batches, m, r, c, configs=["PU", "ZH", "FU"], limit=5)
    assert res.num_examples == 5
    allb = {k: torch.cat([b[k] for b in batches])[:5] for k in batches[0]}
    with torch.inference_mode():
        rot, expr = allb["pose"][:, :3], allb["pose"][:, 3:]
        morphed = m(allb["rest_image"], expr)[0]
        pu, zh = r(morphed, rot)[:2]
        fu = c(pu, zh, rot)[0]
        tpu, tzh = r(allb["morphed_image"], rot)[:2]
    expect = {"morpher": (morphed, allb["morphed_image"]), "PU": (pu, allb["posed_image"]),
              "ZH": (zh, allb["posed_image"]), "FU": (fu, allb["posed_image"]),
              "rotator/pumarola": (tpu, allb["posed_image"]), "rotator/zhou": (tzh, allb["posed_image"])}
    for row, (p, t) in expect.items():
        sc = ev.score_images(p, t)
        for metric in ev.METRICS:
            assert res.rows[row].mean(metric) == pytest.approx(sc[metric].double().mean().item(), rel=1e-5, abs=1e-7)
    mask = ev.changed_region(allb["rest_image"], allb["morphed_image"])
    ident = (allb["rest_image"] - allb["morphed_image"]).abs()[mask.expand(-1, 4, -1, -1)].mean().item()
    assert res.regions["identity/morphed"].l1() == pytest.approx(ident, rel=1e-5)
    assert res.regions["morpher"].count == res.regions["identity/morphed"].count == 4 * mask.sum().item()
    table = res.format_table()
    assert "FU-L1-L1" in table and "0.010080" in table and "PU-L1" in table
    assert f"{ident:.5f}" in table and "changed region" in table
    assert "[-1, 1]" in table and "sRGB" in table


# ------------------------------------------------------------------ thactl eval on a tiny shard


def _write_tiny_shard(root: Path, n_models=2, per_model=3, s=32, seed=0, split="test") -> Path:
    from dataset.shards import ShardWriter

    rng = np.random.default_rng(seed)
    path = root / split / "shard-00000.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:s, 0:s]

    def img(shift):
        a = np.zeros((s, s, 4), np.uint8)
        disc = (yy - s / 2) ** 2 + (xx - s / 2 - shift) ** 2 < (s / 3) ** 2
        a[disc, :3] = rng.integers(30, 255, (int(disc.sum()), 3))
        a[disc, 3] = 255
        return a

    w = ShardWriter(path, s, split, seed, {"note": "eval test"})
    with w:
        for mi in range(n_models):
            row = w.add_model(f"m{mi}.pmx", "0" * 64, np.array([0, 1, 0.5], np.float32), img(0))
            for _ in range(per_model):
                pose = np.concatenate([rng.uniform(-1, 1, 3), rng.uniform(0, 1, 3)]).astype(np.float32)
                w.add_example(row, pose, img(1), img(int(3 * pose[1])), 0.5)
        w.finish()
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    pytest.importorskip("dataset.shards")
    pytest.importorskip("dataset.torchdata")
    from models.io import save_weights

    root = tmp_path_factory.mktemp("evalrun")
    m, r, c = _tiny_nets(3)
    wdir = root / "weights"
    for net in (m, r, c):
        save_weights(net, wdir / f"{net.kind}.safetensors")
    data = _write_tiny_shard(root / "data")
    return data, wdir, (m, r, c)


def test_thactl_eval_table_matches_direct_recomputation(tiny_run, tmp_path, capsys):
    import cli
    from dataset.torchdata import ShardDataset

    data, wdir, (m, r, c) = tiny_run
    out = tmp_path / "ev"
    rc = cli.main(["eval", "--data", str(data), "--split", "test", "--weights", str(wdir), "--path", "all",
                   "--batch-size", "4", "--device", "cpu", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "THA1" in captured.out and "FU-L1-L1" in captured.out
    rep = json.loads((out / "eval-test.json").read_text())
    rows = {x["row"]: x for x in rep["rows"]}
    assert set(rows) == {"identity/morphed", "identity/posed", "identity/rotated", "morpher", "rotator/pumarola",
                         "rotator/zhou", "rotator+combiner", "PU", "ZH", "FU"}
    assert rep["num_examples"] == 6

    ds = ShardDataset(str(data), split="test")
    items = [ds[i] for i in range(len(ds))]
    st = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("rest_image", "morphed_image",
                                                                            "posed_image", "pose")}
    with torch.inference_mode():
        rot, expr = st["pose"][:, :3], st["pose"][:, 3:]
        morphed = m(st["rest_image"], expr)[0]
        pu, zh = r(morphed, rot)[:2]
        fu = c(pu, zh, rot)[0]
    for row, pred, target in (("identity/posed", st["rest_image"], st["posed_image"]),
                              ("morpher", morphed, st["morphed_image"]), ("PU", pu, st["posed_image"]),
                              ("ZH", zh, st["posed_image"]), ("FU", fu, st["posed_image"])):
        sc = ev.score_images(pred, target)
        for metric in ev.METRICS:
            assert rows[row][metric] == pytest.approx(sc[metric].double().mean().item(), rel=1e-5, abs=1e-7)
            assert f"{rows[row][metric]:.6f}" in captured.out  # the terminal table shows the same numbers
        region = ev.RegionMeter()  # every row here starts from the rest image
        region.add(ev.region_error_sums(pred, target, ev.changed_region(st["rest_image"], target)))
        assert rows[row]["region_l1"] == pytest.approx(region.l1(), rel=1e-5)
        assert rows[row]["region_rmse"] == pytest.approx(region.rmse(), rel=1e-5)
        assert f"{region.l1():.5f}" in captured.out
    with (out / "eval-test.csv").open() as f:
        recs = list(csv.DictReader(f))
    assert [x["row"] for x in recs] == [x["row"] for x in rep["rows"]]
    assert float(recs[-1]["ssim"]) == pytest.approx(rows["FU"]["ssim"])
    assert rows["FU"]["tha1_rmse"] == 0.010080


def test_thactl_eval_bad_inputs(tiny_run, tmp_path, capsys):
    import cli

    data, wdir, _ = tiny_run
    rc = cli.main(["eval", "--data", str(data), "--weights", str(tmp_path / "nope")])
    assert rc == 1 and "weights folder not found" in capsys.readouterr().err
    only_m = tmp_path / "w2"
    only_m.mkdir()
    (only_m / "morpher.safetensors").write_bytes((wdir / "morpher.safetensors").read_bytes())
    rc = cli.main(["eval", "--data", str(data), "--weights", str(only_m)])
    assert rc == 1 and "no rotator.safetensors" in capsys.readouterr().err
    rc = cli.main(["eval", "--data", str(data), "--morpher", str(wdir), "--rotator", str(wdir), "--path", "full"])
    assert rc == 1 and "needs a combiner" in capsys.readouterr().err
    small = _write_tiny_shard(tmp_path / "small", n_models=1, per_model=1, s=16)
    rc = cli.main(["eval", "--data", str(small), "--weights", str(wdir)])
    assert rc == 1 and "images are 16x16, the networks take 32x32" in capsys.readouterr().err
    rc = cli.main(["eval", "--data", str(data), "--split", "validation", "--weights", str(wdir)])
    assert rc == 1 and "validation" in capsys.readouterr().err
    a_file = tmp_path / "report.txt"
    a_file.write_text("x")
    rc = cli.main(["eval", "--data", str(data), "--weights", str(wdir), "--out", str(a_file)])
    assert rc == 1 and "--out must be a folder" in capsys.readouterr().err  # was FileExistsError traceback


def test_thactl_eval_on_trained_run_folders(tmp_path, capsys):
    """`thactl train` run folders (tiny, a few examples) -> `thactl eval --morpher RUN ...`: the table
    equals a direct recomputation with the exported weights, written into the first run folder."""
    pytest.importorskip("dataset.torchdata")
    import cli
    from dataset.torchdata import ShardDataset
    from models.io import load_weights

    data = tmp_path / "data"
    for i, split in enumerate(("train", "validation", "test")):
        _write_tiny_shard(data, n_models=2, per_model=2, seed=10 + i, split=split)
    arch = ["--base-channels", "4", "--num-downsample", "2", "--num-res-blocks", "1", "--batch-size", "2",
            "--examples", "4", "--val-examples", "2", "--samples", "1", "--quiet", "--device", "cpu"]
    runs = {k: tmp_path / "runs" / k for k in ("morpher", "rotator", "combiner")}
    assert cli.main(["train", "morpher", "--data", str(data), "--out", str(runs["morpher"]), *arch]) == 0
    assert cli.main(["train", "rotator", "--data", str(data), "--out", str(runs["rotator"]), *arch]) == 0
    assert cli.main(["train", "combiner", "--data", str(data), "--out", str(runs["combiner"]),
                     "--rotator", str(runs["rotator"]), *arch]) == 0
    capsys.readouterr()
    rc = cli.main(["eval", "--data", str(data), "--morpher", str(runs["morpher"]), "--rotator",
                   str(runs["rotator"]), "--combiner", str(runs["combiner"]), "--no-stages", "--device", "cpu"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    rep = json.loads((runs["morpher"] / "eval-test.json").read_text())
    assert [r["row"] for r in rep["rows"]] == ["FU"] and rep["rows"][0]["tha1_config"] == "FU-L1-L1"
    m, r, c = (load_weights(runs[k], k).eval() for k in ("morpher", "rotator", "combiner"))
    ds = ShardDataset(str(data), split="test")
    st = {k: torch.stack([torch.as_tensor(ds[i][k]) for i in range(len(ds))])
          for k in ("rest_image", "posed_image", "pose")}
    with torch.inference_mode():
        rot = st["pose"][:, :3]
        pu, zh = r(m(st["rest_image"], st["pose"][:, 3:])[0], rot)[:2]
        sc = ev.score_images(c(pu, zh, rot)[0], st["posed_image"])
    for metric in ev.METRICS:
        assert rep["rows"][0][metric] == pytest.approx(sc[metric].double().mean().item(), rel=1e-5, abs=1e-7)
        assert f"{rep['rows'][0][metric]:.6f}" in cap.out
