"""`thactl inspect` on a pose schema's data (a tiny real tha3 render): the table per parameter (min /
mean / max, share at rest, share active in its group, share of examples whose model can show it), the
group lines, and contact-sheet captions named by the schema."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from cli import main as cli_main
from conftest import render_tha3_mikus
from core.poseschema import load_schema
from dataset.shardinfo import pose_caption, schema_stat_rows
from dataset.shards import ShardReader

ROW = re.compile(r"^\s+(\d+)\s+(\S+)\s+(face|rotation)\s+(\S*)\s+([-+]\d\.\d+)\s+([-+]\d\.\d+)\s+([-+]\d\.\d+)\s+"
                 r"(\d+\.\d)%\s+(?:(\d+\.\d)%\s+)?(\d+\.\d)%$")


@pytest.fixture(scope="module")
def tha3_data(shared_models, tmp_path_factory):
    """16 training examples of miku_v2 (no mouth-corner morphs) and 8 validation examples of miku, 32 px."""
    return render_tha3_mikus(shared_models, tmp_path_factory, count=16, val_count=8, size=32)


def test_inspect_prints_a_row_per_schema_parameter(tha3_data, capsys):
    schema = load_schema("tha3")
    capsys.readouterr()
    assert cli_main(["inspect", str(tha3_data)]) == 0
    out = capsys.readouterr().out
    assert "schema tha3 (45 parameters" in out
    rows = [m.groups() for m in map(ROW.match, out.splitlines()) if m]
    assert [int(r[0]) for r in rows] == list(range(45)) and tuple(r[1] for r in rows) == schema.names
    for index, name, inp, group, lo, mean, hi, rest, in_group, avail in rows:
        p = schema.parameters[int(index)]
        assert inp == p.input and group == (p.group or "")
        assert float(lo) <= float(mean) <= float(hi)
        assert 0.0 <= float(rest) <= 100.0 and 0.0 <= float(avail) <= 100.0
        assert (in_group is None) == (p.group is None)
        if in_group is not None:
            assert float(in_group) == pytest.approx(100.0 - float(rest), abs=0.11)
    by_name = {r[1]: r for r in rows}
    # neither Miku has a raised mouth corner: unavailable on every example, so always at rest
    assert float(by_name["mouth_raised_corner_left"][9]) < 100.0
    assert float(by_name["mouth_raised_corner_left"][7]) == 100.0
    assert float(by_name["eye_wink_left"][9]) == 100.0 and float(by_name["head_y"][9]) == 100.0
    assert float(by_name["head_y"][7]) < 100.0          # a rotation is almost never exactly at rest
    for group in ("eyebrow", "eye", "iris", "mouth"):
        assert f"group {group}: examples with k semantics active" in out
    assert "mouth_raised_corner_left" in out.split("unavailable on some models")[1]


def test_schema_stat_rows_from_the_shards(tha3_data):
    schema = load_schema("tha3")
    with ShardReader(tha3_data / "train" / "shard-00000.h5") as r:
        rows = schema_stat_rows(r.pose, r.schema, r.model_available[r.model_index])
    assert [x["name"] for x in rows] == list(schema.names)
    assert all(0.0 <= x["at_rest"] <= 1.0 and 0.0 <= x["available"] <= 1.0 for x in rows)
    named = {x["name"]: x for x in rows}
    assert named["mouth_raised_corner_left"]["available"] == 0.0       # miku_v2 lacks it
    assert named["eye_wink_left"]["available"] == 1.0 and named["head_x"]["group_share"] is None


def test_inspect_sheet_captions_name_the_schema_parameters(tha3_data, tmp_path, capsys):
    schema = load_schema("tha3")
    sheet = tmp_path / "sheet.png"
    assert cli_main(["inspect", str(tha3_data), "--sheet", str(sheet), "--examples", "3"]) == 0
    assert "contact sheet" in capsys.readouterr().out
    assert Image.open(sheet).size[0] == 3 * 128 + 16
    pose = schema.rest.copy()
    pose[schema.index("eye_wink_left")] = 0.5
    pose[schema.index("head_y")] = -0.25
    caption = " ".join(pose_caption(pose, schema))
    assert "eye_wink_left=0.50" in caption and "head_y=-0.25" in caption and "breathing=+0.00" in caption
    assert "mouth_aaa" not in caption                  # face parameters at rest are left out
    assert pose_caption(np.zeros(45, np.float32), schema)[-1] == "face at rest"
    # THA1's caption is as it was
    assert pose_caption(np.array([0.1, -0.2, 0.3, 0.4, 0.5, 0.6])) == [
        "hx +0.10 hy -0.20 nz +0.30  le 0.40 re 0.50 m 0.60"]
