"""core/atomicfile.py: a file appears complete under its final name or not at all."""
import json

import pytest

from core.atomicfile import atomic_path, temp_glob, temp_path, write_bytes, write_json, write_text


def test_write_bytes_replaces_content_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")
    assert write_bytes(p, b"new") == p
    assert p.read_bytes() == b"new"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.bin"]


def test_failed_write_keeps_old_content_and_deletes_temporary(tmp_path):
    p = tmp_path / "a.txt"
    write_text(p, "kept")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert p.read_text() == "kept"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]


def test_temporary_is_hidden_beside_the_target_and_matched_by_its_glob(tmp_path):
    p = tmp_path / "shard-00001.h5"
    t = temp_path(p)
    assert t.parent == tmp_path and t.name.startswith(".shard-00001.h5.") and t.name.endswith(".tmp")
    t.write_bytes(b"left by a killed run")
    (tmp_path / ".shard-00010.h5.x-1.tmp").write_bytes(b"another shard's")
    assert list(tmp_path.glob(temp_glob(p.name))) == [t]


def test_write_json_is_utf8_indented_with_final_newline(tmp_path):
    p = tmp_path / "m.json"
    write_json(p, {"name": "初音ミク", "n": [1, 2]}, durable=True)
    raw = p.read_bytes()
    assert raw.endswith(b"}\n") and "初音ミク".encode() in raw
    assert raw.decode() == json.dumps({"name": "初音ミク", "n": [1, 2]}, indent=1, ensure_ascii=False) + "\n"
