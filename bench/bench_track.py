"""Face tracking speed and end-to-end motion transfer speed.

    .venv/bin/python bench/bench_track.py                       # tracking at 640x480 + animate --video, CPU
    .venv/bin/python bench/bench_track.py --frames 60 --animate-frames 4 --device cuda
    .venv/bin/python bench/bench_track.py --weights DIR         # trained weights instead of random ones

Tracking: ms per 640x480 frame for MediaPipe FaceMesh (478 landmarks) in video mode (landmarks
tracked from frame to frame) and in image mode (face detection on every frame), on a clip of a
real face (scikit-image's astronaut) turning in the image plane; plus the pose maths per frame.
End to end: `thactl animate DRAWING --video CLIP -o out.gif` with THA1-sized networks (random
weights unless --weights: speed does not depend on the values), frames per second of the whole
command and of the networks alone. Needs the [track] extra.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def clip_frames(n: int) -> list[np.ndarray]:
    from faces import astronaut_face, rolled_frame

    face = astronaut_face()
    return [rolled_frame(face, 20 * np.sin(2 * np.pi * i / 30), canvas=(640, 480)) for i in range(n)]


def time_tracking(frames: list[np.ndarray], video: bool) -> tuple[float, float]:
    """(ms per frame for the tracker, ms per frame for geometry + mapping)."""
    from tracking.facemesh import FaceTracker
    from tracking.geometry import face_measures, head_rotation, rotation_to_angles
    from tracking.posemap import PoseMapping, to_poses

    with FaceTracker(video=video) as tracker:
        tracker(frames[0])                              # warm-up
        t0 = time.perf_counter()
        lms = [tracker(f) for f in frames]
        track_s = time.perf_counter() - t0
    found = np.stack([lm for lm in lms if lm is not None])
    t0 = time.perf_counter()
    for lm in found:
        angles = rotation_to_angles(head_rotation(found[0], lm))
        to_poses(angles[None], face_measures(lm)[None], PoseMapping())
    maths_s = time.perf_counter() - t0
    return 1000 * track_s / len(frames), 1000 * maths_s / len(found)


def save_random_networks(folder: Path) -> Path:
    import torch

    from models import Combiner, FaceMorpher, TwoAlgoFaceRotator
    from models.io import save_weights

    torch.manual_seed(0)
    for net in (FaceMorpher(), TwoAlgoFaceRotator(), Combiner()):
        save_weights(net, folder / f"{net.kind}.safetensors")
    return folder


def time_animate(frames: list[np.ndarray], weights: Path | None, device: str, tmp: Path) -> None:
    import imageio.v3 as iio
    from PIL import Image

    import cli

    clip = tmp / "clip.mp4"
    iio.imwrite(clip, np.stack(frames), fps=20, codec="libx264", macro_block_size=16)
    weights = weights or save_random_networks(tmp)
    size = 256
    drawing = np.zeros((size, size, 4), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    drawing[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2] = (230, 180, 160, 255)
    Image.fromarray(drawing, "RGBA").save(tmp / "drawing.png")
    t0 = time.perf_counter()
    rc = cli.main(["animate", str(tmp / "drawing.png"), "--weights", str(weights), "--video", str(clip),
                   "-o", str(tmp / "out.gif"), "--device", device])
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"animate failed (exit {rc})")
    print(f"animate --video: {len(frames)} frames in {seconds:.1f} s = {len(frames) / seconds:.3f} frames/s "
          f"end to end on {device} (the 'networks:' line above is the networks alone)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60, help="frames for the tracking timing")
    ap.add_argument("--animate-frames", type=int, default=4, help="frames for animate --video (0: skip)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", type=Path, default=None)
    args = ap.parse_args()
    frames = clip_frames(args.frames)
    for video in (True, False):
        track_ms, maths_ms = time_tracking(frames, video)
        mode = "video mode (tracking)" if video else "image mode (detect every frame)"
        print(f"tracking 640x480, {mode}: {track_ms:.1f} ms/frame ({1000 / track_ms:.1f} frames/s); "
              f"pose maths {maths_ms:.2f} ms/frame")
    if args.animate_frames:
        with tempfile.TemporaryDirectory() as tmp:
            time_animate(frames[:args.animate_frames], args.weights, args.device, Path(tmp))


if __name__ == "__main__":
    main()
