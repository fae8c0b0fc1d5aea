"""The poser as ONNX: (image (B, 4, S, S), pose (B, P)) -> posed image, fp32, dynamic batch; checked
against torch with onnxruntime when it is installed. P is the size of the networks' pose schema (THA1:
6); weights of another schema also record it in the model's metadata (`pose_schema`: its name,
`pose_names`: the JSON list of the input's names in order)."""
from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from core.errors import typed_first_line
from core.pose import POSE_HIGH, POSE_LOW
from models.poser import Poser

from .errors import InferenceError

log = logging.getLogger("thactl.inference")


class PoserGraph(Poser):
    """(image (B, 4, S, S), pose (B, P)) -> final image (B, 4, S, S): the exportable poser."""

    def forward(self, image: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        return super().forward(image, pose)[0]


def _random_poses(n: int, g: torch.Generator, schema=None) -> torch.Tensor:
    """`n` poses uniform within the pose bounds (core.pose for THA1's six; else the schema's)."""
    if schema is None:
        low, high = torch.from_numpy(POSE_LOW), torch.from_numpy(POSE_HIGH)
    else:
        low, high = torch.from_numpy(schema.low), torch.from_numpy(schema.high)
    return torch.rand(n, len(low), generator=g) * (high - low) + low


def _record_schema(path: Path, schema) -> None:
    """Write the schema's name and pose names into the ONNX file's metadata."""
    import onnx

    model = onnx.load(str(path))
    for key, value in (("pose_schema", schema.name), ("pose_names", json.dumps(list(schema.names)))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def export_onnx(runner, out: str | Path, opset: int = 20, verify: bool = True,
                atol: float = 1e-3, seed: int = 0) -> dict:
    """Export the runner's poser to ONNX (fp32, CPU, dynamic batch). Returns a report dict with
    'path', 'max_abs_diff' (None when onnxruntime is missing) and 'verified'."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a CPU fp32 copy: the runner's own modules stay where they are
    poser = runner.poser
    schema = None if runner.schema.is_tha1 else runner.schema   # THA1: the graph exactly as before
    graph = copy.deepcopy(PoserGraph(poser.morpher, poser.rotator, poser.combiner, path=poser.path,
                                     schema=schema))
    graph = graph.to("cpu").float().eval()
    s = runner.image_size
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 4, s, s, generator=g) * 2 - 1
    pose = _random_poses(2, g, schema)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise InferenceError("ONNX export needs the onnx package (pip install onnx onnxruntime)") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (image, pose), str(out), input_names=["image", "pose"],
                              output_names=["posed"], opset_version=opset, dynamo=False,
                              dynamic_axes={"image": {0: "batch"}, "pose": {0: "batch"}, "posed": {0: "batch"}})
    except Exception as e:  # noqa: BLE001 - report exporter failures as one line
        raise InferenceError(f"{out}: ONNX export failed: {typed_first_line(e)}") from None
    if schema is not None:
        _record_schema(out, schema)
    report = {"path": str(out), "max_abs_diff": None, "verified": False, "opset": opset}
    if not verify:
        return report
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime not installed: exported without checking the output")
        return report
    # check at another batch size than the traced one (the batch axis is dynamic)
    image = torch.rand(3, 4, s, s, generator=g) * 2 - 1
    pose = _random_poses(3, g, schema)
    with torch.inference_mode():
        ref = graph(image, pose).numpy()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(["posed"], {"image": image.numpy(), "pose": pose.numpy()})[0]
    diff = float(np.abs(got - ref).max())
    report["max_abs_diff"] = diff
    report["verified"] = diff <= atol
    if diff > atol:
        raise InferenceError(f"{out}: onnxruntime output differs from torch by {diff:.2e} (> {atol:g})")
    return report
