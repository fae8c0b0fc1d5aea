"""Poses for `thactl pose` and `thactl animate`: built-in motions, CSV files and NAME=VALUE settings,
all in the pose schema of the networks (core.poseschema; `schema=None` means THA1's six numbers).

Every motion is an (N, P) float32 array in schema order (THA1: head_x, head_y, neck_z, left_eye,
right_eye, mouth). THA1's six numbers (a THA1 motion, a tracked face) reach another schema through
`PoseSchema.from_tha1` (head, eye winks, mouth_aaa); for THA1 itself nothing is converted, so THA1's
poses are exactly what they were.

CSV files (`read_csv`): lines starting with '#' and blank lines are skipped. A first row of names is
a header: THA1's six names (optionally followed by more columns, e.g. `thactl track`'s `face`, which
are ignored) mean THA1 numbers; otherwise every column must name a parameter of the schema (any
subset, in any order; the others stay at rest). Without a header a row holds all P numbers of the
schema in order, or THA1's six.
"""
from __future__ import annotations

import csv
import difflib
import math
from pathlib import Path

import numpy as np

from core.pose import POSE_HIGH, POSE_LOW, POSE_NAMES, pose_problem
from core.poseschema import PoseSchema, load_schema

from .errors import MotionError

BUILTIN = ("sweep", "blink", "talk")
SWEEP_SECONDS_PER_PARAMETER = 1.2
SYLLABLES_PER_SECOND = 4.6          # humps of |sin(2π 2.3 t)|: one syllable each
# the mouth shapes `talk` cycles through, one per syllable, when the schema has at least two of them
VOWELS = ("mouth_aaa", "mouth_iii", "mouth_uuu", "mouth_eee", "mouth_ooo")
LIST_HINT = "list them with: thactl pose --weights DIR --list-parameters"


def schema_or_tha1(schema: PoseSchema | None) -> PoseSchema:
    """The schema given, or the built-in tha1 schema for None."""
    return schema if schema is not None else load_schema("tha1")


def _is_tha1(schema: PoseSchema | None) -> bool:
    return schema is None or schema.is_tha1


def from_tha1(poses6: np.ndarray, schema: PoseSchema | None = None) -> np.ndarray:
    """THA1-order poses (N, 6) -> the schema's (N, P) float32 (PoseSchema.from_tha1); unchanged for THA1."""
    if _is_tha1(schema):
        return np.asarray(poses6, np.float32)
    return schema.from_tha1(poses6)


# ---------------------------------------------------------------- built-in motions

def _sweep_values(low: float, high: float, rest: float, wave: np.ndarray, bump: np.ndarray) -> np.ndarray:
    """One parameter's sweep: resting inside its range rest -> high -> rest -> low -> rest (`wave`),
    resting at one end to the other end and back (`bump`)."""
    if low < rest < high:
        return np.where(wave >= 0, rest + wave * (high - rest), rest + wave * (rest - low))
    far = high if rest == low else low
    return rest + bump * (far - rest)


def sweep(frames_per_param: int = 24, schema: PoseSchema | None = None) -> np.ndarray:
    """Each parameter of the schema in turn (P x frames_per_param frames), the others at rest.

    THA1: rotations go 0 -> +1 -> 0 -> -1 -> 0; eyes 0 -> 1 (closed) -> 0; the mouth 1 -> 0 -> 1.
    In general a parameter resting inside its range goes to its high end, back, to its low end and
    back; one resting at an end of its range goes to the other end and back.
    """
    if frames_per_param < 2:
        raise MotionError("sweep needs at least 2 frames per parameter")
    s = schema_or_tha1(schema)
    t = np.arange(frames_per_param, dtype=np.float64) / frames_per_param
    wave = np.sin(2 * math.pi * t)           # 0 -> 1 -> 0 -> -1 -> 0
    bump = 0.5 - 0.5 * np.cos(2 * math.pi * t)  # 0 -> 1 -> 0
    out = []
    for i, p in enumerate(s.parameters):
        seg = np.tile(s.rest, (frames_per_param, 1)).astype(np.float64)
        seg[:, i] = _sweep_values(p.low, p.high, p.rest, wave, bump)
        out.append(seg)
    return np.concatenate(out).astype(np.float32)


def _blink_curve(n: int, fps: float, period_s: float = 1.6, blink_s: float = 0.24, first_s: float = 0.5) -> np.ndarray:
    """Eyelid closure per frame: 0 open, a smooth 0->1->0 bump lasting blink_s every period_s."""
    t = np.arange(n) / fps
    phase = (t - first_s) % period_s
    inside = (t >= first_s) & (phase < blink_s)
    return np.where(inside, 0.5 - 0.5 * np.cos(2 * math.pi * phase / blink_s), 0.0)


def blink(seconds: float = 3.0, fps: float = 20.0, schema: PoseSchema | None = None) -> np.ndarray:
    """Both eyes blink every 1.6 s (THA1's left_eye/right_eye; a schema's eye_wink_left/right through
    FROM_THA1); head straight; mouth closed."""
    n = max(int(round(seconds * fps)), 2)
    p = np.zeros((n, 6), np.float64)
    e = _blink_curve(n, fps)
    p[:, 3] = e
    p[:, 4] = e
    return from_tha1(p.astype(np.float32), schema)


def _talk_tha1(n: int, fps: float) -> np.ndarray:
    """THA1's talk motion (n, 6) float32: mouth in syllable beats, a slight nod and sway, blinks."""
    t = np.arange(n) / fps
    p = np.zeros((n, 6), np.float64)
    syll = np.abs(np.sin(2 * math.pi * 2.3 * t)) * (0.55 + 0.45 * np.abs(np.sin(2 * math.pi * 0.37 * t + 0.5)))
    pause = (t % 2.0) > 1.6  # a short pause every two seconds
    p[:, 5] = np.where(pause, 0.0, syll)
    p[:, 0] = 0.25 * np.sin(2 * math.pi * 0.5 * t)
    p[:, 1] = 0.3 * np.sin(2 * math.pi * 0.21 * t)
    p[:, 2] = 0.15 * np.sin(2 * math.pi * 0.33 * t + 1.0)
    e = _blink_curve(n, fps, period_s=2.2, first_s=0.8)
    p[:, 3] = e
    p[:, 4] = e
    return p.astype(np.float32)


def talk(seconds: float = 3.0, fps: float = 20.0, schema: PoseSchema | None = None) -> np.ndarray:
    """Mouth opening and closing in syllable-like beats, a slight nod and sway, blinks.

    THA1 opens `mouth`; a schema with two or more of VOWELS gives each syllable the next of them in
    turn (aaa, iii, uuu, eee, ooo, aaa, ...), the others at rest; otherwise FROM_THA1's mouth_aaa.
    """
    n = max(int(round(seconds * fps)), 2)
    p6 = _talk_tha1(n, fps)
    out = from_tha1(p6, schema)
    if _is_tha1(schema):
        return out
    vowels = [schema.index(v) for v in VOWELS if v in schema.names]
    if len(vowels) >= 2:
        beat = np.floor(np.arange(n) / fps * SYLLABLES_PER_SECOND).astype(np.int64)
        which = np.array(vowels)[beat % len(vowels)]
        out[:, vowels] = schema.rest[vowels]
        out[np.arange(n), which] = p6[:, 5]
    return out


# ---------------------------------------------------------------- names

def unknown_name(schema: PoseSchema, name: str) -> str:
    """One line saying `name` is no parameter of `schema`, with the closest names and where to list them."""
    close = difflib.get_close_matches(name, schema.names, n=3, cutoff=0.6)
    near = f"close: {', '.join(close)}" if close else "no close name"
    return f"the {schema.name} schema has no parameter {name!r} ({near}); {LIST_HINT}"


def pose_from_settings(schema: PoseSchema | None, tha1=None, settings=()) -> np.ndarray:
    """One (P,) float32 pose of `schema`: THA1's six numbers `tha1` through from_tha1 (None: the rest
    pose), then each "NAME=VALUE" of `settings` in order (a later one wins). A malformed setting, an
    unknown name or a value outside its range is a MotionError of one line (the schema's wording)."""
    s = schema_or_tha1(schema)
    pose = s.rest.copy() if tha1 is None else from_tha1(np.array([tha1], np.float32), schema)[0].copy()
    for text in settings:
        name, sep, value = str(text).partition("=")
        name = name.strip()
        try:
            number = float(value) if sep else None
        except ValueError:
            number = None
        if number is None:
            raise MotionError(f"--set {text!r}: expected NAME=VALUE with a number, e.g. {s.names[0]}=0.5")
        if name not in s.names:
            raise MotionError(f"--set {text}: {unknown_name(s, name)}")
        pose[s.index(name)] = number
    problem = s.problem(pose, tolerance=0.0)
    if problem:
        raise MotionError(f"--set: {problem}")
    return pose


# ---------------------------------------------------------------- CSV files

def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, stripped cells) of every row that is neither blank nor a '#' comment."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MotionError(f"{path}: motion file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MotionError(f"{path}: cannot read motion file ({e})") from None
    out = []
    for lineno, cells in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in cells]
        if not cells or all(c == "" for c in cells) or cells[0].startswith("#"):
            continue
        out.append((lineno, cells))
    return out


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _numbers(path: Path, lineno: int, cells: list[str]) -> list[float]:
    try:
        return [float(c) for c in cells]
    except ValueError:
        raise MotionError(f"{path}: line {lineno}: not a number in {','.join(cells)!r}") from None


def _header_columns(path: Path, header: list[str], s: PoseSchema) -> list[int]:
    """A named header -> the schema position of each column (unknown or repeated name: MotionError)."""
    positions = []
    for name in header:
        if name not in s.names:
            raise MotionError(f"{path}: column {name!r}: {unknown_name(s, name)}")
        if s.index(name) in positions:
            raise MotionError(f"{path}: column {name!r} appears twice in the header")
        positions.append(s.index(name))
    return positions


def _read_tha1(path: Path, rows, width: int) -> np.ndarray:
    """Rows of THA1's six numbers (a THA1 header of `width` columns, the ones after six ignored)."""
    out: list[list[float]] = []
    for lineno, cells in rows:
        if len(cells) != width:
            what = "6 numbers" if width == 6 else f"{width} columns, as in the header"
            raise MotionError(f"{path}: line {lineno}: expected {what} ({', '.join(POSE_NAMES)}), "
                              f"got {len(cells)} columns")
        values = _numbers(path, lineno, cells[:6])
        problem = pose_problem(np.array(values, np.float32))
        if problem:
            raise MotionError(f"{path}: line {lineno}: {problem}")
        out.append(values)
    return np.clip(np.array(out, np.float32), POSE_LOW, POSE_HIGH)


def _read_named(path: Path, rows, s: PoseSchema, positions: list[int], headed: bool) -> np.ndarray:
    """Rows whose columns are the schema positions `positions`; the others at rest."""
    out = []
    for lineno, cells in rows:
        if len(cells) != len(positions):
            what = (f"{len(positions)} columns, as in the header" if headed
                    else f"{s.size} numbers (the {s.name} schema's parameters in order) or 6 (THA1's)")
            raise MotionError(f"{path}: line {lineno}: expected {what}, got {len(cells)} columns")
        pose = s.rest.astype(np.float64)
        pose[positions] = _numbers(path, lineno, cells)
        problem = s.problem(pose)
        if problem:
            raise MotionError(f"{path}: line {lineno}: {problem}")
        out.append(pose)
    return np.clip(np.array(out, np.float32), s.low, s.high)


def read_csv(path: str | Path, schema: PoseSchema | None = None) -> np.ndarray:
    """Poses from a CSV file (see the module's docstring) -> (N, P) float32 in the schema's order,
    ranges checked; a bad row or column is a MotionError naming the file and the line or column."""
    path = Path(path)
    s = schema_or_tha1(schema)
    rows = _csv_rows(path)
    if not rows:
        raise MotionError(f"{path}: no pose rows (expected one row of {s.size} numbers per frame)")
    first = rows[0][1]
    header = [c.lower() for c in first] if not any(_is_number(c) for c in first) else None
    data = rows[1:] if header is not None else rows
    if not data:
        raise MotionError(f"{path}: no pose rows (expected one row of {s.size} numbers per frame)")
    if header is not None and header[:6] == list(POSE_NAMES):
        return from_tha1(_read_tha1(path, data, len(header)), schema)
    if header is not None:
        return _read_named(path, data, s, _header_columns(path, header, s), headed=True)
    if _is_tha1(schema) or (len(first) == 6 and s.size != 6):
        return from_tha1(_read_tha1(path, data, 6), schema)
    return _read_named(path, data, s, list(range(s.size)), headed=False)


def write_csv(path: str | Path, poses: np.ndarray, schema: PoseSchema | None = None) -> Path:
    """Write (N, P) poses with a header row of the schema's names; read_csv reads it back."""
    path = Path(path)
    s = schema_or_tha1(schema)
    poses = np.asarray(poses, np.float32).reshape(-1, s.size)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(s.names)
        for row in poses:
            w.writerow([f"{x:.6g}" for x in row])
    return path


def get_motion(spec: str, fps: float = 20.0, seconds: float | None = None,
               schema: PoseSchema | None = None) -> np.ndarray:
    """'sweep' | 'blink' | 'talk' | path to a CSV file -> (N, P) float32 poses of the schema.

    sweep: SWEEP_SECONDS_PER_PARAMETER per parameter, or `seconds` shared among the P parameters."""
    if spec == "sweep":
        size = schema_or_tha1(schema).size
        per = max(int(round(fps * (seconds / size if seconds else SWEEP_SECONDS_PER_PARAMETER))), 2)
        return sweep(per, schema)
    if spec == "blink":
        return blink(seconds or 3.0, fps, schema)
    if spec == "talk":
        return talk(seconds or 4.0, fps, schema)
    p = Path(spec)
    if p.suffix.lower() == ".csv" or p.exists():
        return read_csv(p, schema)
    raise MotionError(f"unknown motion {spec!r}: use sweep, blink, talk or a .csv file of poses")
