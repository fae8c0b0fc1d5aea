"""Pose schemas as data (docs/pose-schemas.md): which numbers a pose has, in which order, what each
one drives on an MMD model, its range and rest value, how training data samples it and which network
input it feeds.

`load_schema(spec)` takes a built-in name (`tha1`, the default, and `tha3`: core/schemas/*.json) or
the path of a JSON file and returns a checked `PoseSchema`; anything wrong is a `SchemaError` with one
line naming the file and the problem. `PoseSchema.sample(rng, n, available)` is the sampling law of
the schema (independent values, or exclusive groups as THA2 sampled its eyebrow, eye and mouth morphs;
drawn among what a model can show when given its availability);
`PoseSchema.problem(pose)` is the pose check of the schema (as core.pose.pose_problem is THA1's).

The built-in `tha1` schema describes core/pose.py's six numbers; data for it is made by THA1's own rig
and sampler (renderer/face_rig.py, dataset/poses.py), so its shards stay exactly as before.
Standard library and numpy only; imports nothing of the project but core.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import ThactlError
from core.pose import first_bad_value

SCHEMA_FORMAT = "thactl-pose-schema"
SCHEMA_VERSION = 1
BUILTIN_DIR = Path(__file__).with_name("schemas")
BUILTIN = ("tha1", "tha3")
DEFAULT_SCHEMA = "tha1"
KINDS = ("morph", "rotation", "combination")
INPUTS = ("face", "rotation")
SIDES = ("left", "right")
AXES = ("x", "y", "z")
LAWS = ("uniform", "abs")          # uniform on the range; density ∝ |v| on [-1, 1] (THA1's head law)
RANGE_TOLERANCE = 1e-6
# the version of the sampling law render uses for a schema's data, recorded in its request so a folder
# is never resumed under another law: 1 drew every group before a model's availability was applied;
# 2 draws each example's groups among the semantics its model can show (PoseSchema.sample's mask)
SAMPLING_LAW = 2
# where THA1's six numbers (a tracked face, a THA1 motion file) go in a schema: the first of each
# entry's names that the schema has (a schema without any of them leaves that number out)
FROM_THA1 = {"head_x": ("head_x",), "head_y": ("head_y",), "neck_z": ("neck_z",),
             "left_eye": ("left_eye", "eye_wink_left"), "right_eye": ("right_eye", "eye_wink_right"),
             "mouth": ("mouth", "mouth_aaa")}


class SchemaError(ThactlError):
    """A pose schema file that cannot be used (one line naming the file and the problem)."""


@dataclass(frozen=True)
class BoneTurn:
    """A rotation of the first bone found by `bones` (aliases) about `axis` by `degrees` per unit."""
    bones: tuple[str, ...]
    axis: str
    degrees: float


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str                       # morph | rotation | combination
    low: float
    high: float
    rest: float
    input: str                      # face (the morpher) | rotation (the rotator and the combiner)
    morphs: tuple[str, ...] = ()    # morph: name aliases, in order of preference
    side: str | None = None         # morph: left | right, decided by geometry
    turns: tuple[BoneTurn, ...] = ()  # rotation: one turn per bone; combination: its parts
    group: str | None = None        # exclusive group, or None (independent)
    law: str = "uniform"            # independent: uniform | abs
    rest_probability: float = 0.0   # independent: probability of the rest value
    mirror: str = "keep"            # keep | negate (the value in the mirror image); sides swap

    @property
    def semantic(self) -> str:
        """The name without its side (`eye_wink_left` -> `eye_wink`)."""
        if self.side and self.name.endswith("_" + self.side):
            return self.name[: -len(self.side) - 1]
        if self.side and self.name.startswith(self.side + "_"):
            return self.name[len(self.side) + 1:]
        return self.name


@dataclass(frozen=True)
class Group:
    """An exclusive group: at rest with `rest_probability`; otherwise k of its semantics (k = 1, 2, ...
    with probabilities `choose`) get weights that sum to less than 1 on each side."""
    name: str
    rest_probability: float
    choose: tuple[float, ...]


@dataclass
class PoseSchema:
    name: str
    description: str
    parameters: tuple[Parameter, ...]
    groups: dict[str, Group]
    source: str = ""                # where it was loaded from (a built-in name or a path)
    raw: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------ facts
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def size(self) -> int:
        return len(self.parameters)

    @property
    def low(self) -> np.ndarray:
        return np.array([p.low for p in self.parameters], np.float32)

    @property
    def high(self) -> np.ndarray:
        return np.array([p.high for p in self.parameters], np.float32)

    @property
    def rest(self) -> np.ndarray:
        return np.array([p.rest for p in self.parameters], np.float32)

    def indices(self, input_name: str) -> list[int]:
        """Positions of the parameters feeding `input_name` (face | rotation), in schema order."""
        return [i for i, p in enumerate(self.parameters) if p.input == input_name]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise SchemaError(f"{self.source}: no parameter named {name!r}") from None

    @property
    def is_tha1(self) -> bool:
        """True for the built-in THA1 schema (rendered by THA1's own rig and sampler)."""
        return self.to_json() == builtin_json("tha1")

    def to_json(self) -> dict:
        """The schema in full, as its file holds it (recorded in manifests and shards)."""
        return json.loads(json.dumps(self.raw))

    def facts(self) -> dict:
        """Names, bounds, rest and inputs as JSON (what pages and tools build sliders from)."""
        return {"schema": self.name, "names": list(self.names), "low": self.low.tolist(),
                "high": self.high.tolist(), "rest": self.rest.tolist(),
                "input": [p.input for p in self.parameters]}

    # ------------------------------------------------------------ checks
    def problem(self, pose, tolerance: float = RANGE_TOLERANCE, batch: bool = False) -> str | None:
        """What is wrong with `pose` ((P,), or (N, P) with `batch`) under this schema, or None:
        one line naming the first bad value, as core.pose.pose_problem does for THA1."""
        shape = f"an (N, {self.size}) array of poses" if batch else f"{self.size} numbers"
        try:
            p = np.asarray(pose, dtype=np.float64)
        except (TypeError, ValueError):
            return f"a {self.name} pose must be {shape}, got {str(pose)[:80]!r}"
        if p.shape[-1:] != (self.size,) or p.ndim != (2 if batch else 1):
            return f"a {self.name} pose must be {shape}, got shape {p.shape}"
        lo, hi = self.low.astype(np.float64) - tolerance, self.high.astype(np.float64) + tolerance
        return first_bad_value(p, ~((p >= lo) & (p <= hi)), self.names, self.low, self.high, batch)

    # ------------------------------------------------------------ mirror
    def mirror_order(self) -> list[int]:
        """p[mirror_order()] * mirror_sign() is the pose of the mirror image: `_left` and `_right`
        parameters of one semantic swap, `mirror: negate` ones change sign."""
        where = {(p.semantic, p.side): i for i, p in enumerate(self.parameters)}
        other = {"left": "right", "right": "left"}
        return [where.get((p.semantic, other.get(p.side)), i) if p.side else i
                for i, p in enumerate(self.parameters)]

    def mirror_sign(self) -> np.ndarray:
        return np.array([-1.0 if p.mirror == "negate" else 1.0 for p in self.parameters], np.float32)

    def tha1_positions(self) -> dict[str, int]:
        """{THA1 name: this schema's position} for each of THA1's six numbers it can take (FROM_THA1)."""
        found = {}
        for tha1_name, names in FROM_THA1.items():
            hit = next((n for n in names if n in self.names), None)
            if hit is not None:
                found[tha1_name] = self.names.index(hit)
        return found

    def from_tha1(self, poses6) -> np.ndarray:
        """THA1-order poses (N, 6) -> this schema's (N, P): the rest pose with THA1's numbers placed by
        FROM_THA1 (a tracked face or a THA1 motion drives a tha3 poser's head, wink and aaa)."""
        poses6 = np.asarray(poses6, np.float32).reshape(-1, 6)
        out = np.tile(self.rest, (len(poses6), 1))
        positions = self.tha1_positions()
        for i, tha1_name in enumerate(FROM_THA1):
            if tha1_name in positions:
                out[:, positions[tha1_name]] = poses6[:, i]
        return out

    # ------------------------------------------------------------ sampling
    def sample(self, rng: np.random.Generator, n: int = 1, available=None) -> np.ndarray:
        """`n` poses (n, P) float32 drawn by the schema's law: independent parameters first (in order),
        then each exclusive group (in order of first appearance); see docs/pose-schemas.md.

        `available` ((P,) bools, or None: all) is what the model to be posed can show: an unavailable
        parameter is at rest, and each group's semantics are chosen among those with an available side
        (k capped at their number; none: the group is at rest). The generator is used the same way
        whatever the mask, so without a mask (or with an all-True one) the draws are those of the law
        alone, and a masked pose differs from the unmasked one only where the mask matters."""
        mask = self._available_mask(available)
        out = np.tile(self.rest.astype(np.float64), (int(n), 1))
        for i, p in enumerate(self.parameters):
            if p.group is None:
                out[:, i] = _independent(rng, p, int(n))
        for g in self.groups.values():
            _sample_group(rng, self, g, out, mask)
        out[:, ~mask] = self.rest.astype(np.float64)[~mask]
        return np.clip(out, self.low, self.high).astype(np.float32)

    def _available_mask(self, available) -> np.ndarray:
        """(P,) bool from `available` (None: all True); a wrong shape is a SchemaError naming it."""
        if available is None:
            return np.ones(self.size, bool)
        mask = np.asarray(available)
        if mask.shape != (self.size,):
            raise SchemaError(f"{self.source}: availability must be {self.size} booleans, got shape {mask.shape}")
        return mask.astype(bool)


def _independent(rng: np.random.Generator, p: Parameter, n: int) -> np.ndarray:
    u = rng.random(n)
    at_rest = rng.random(n) < p.rest_probability
    if p.law == "abs":          # |v| = sqrt(U) on the longer side, fair sign
        sign = rng.random(n) < 0.5
        mag = np.sqrt(u)
        v = np.where(sign, p.rest - mag * (p.rest - p.low), p.rest + mag * (p.high - p.rest))
    else:
        v = p.low + u * (p.high - p.low)
    return np.where(at_rest, p.rest, v)


def _sample_group(rng: np.random.Generator, schema: PoseSchema, g: Group, out: np.ndarray,
                  available: np.ndarray) -> None:
    """One exclusive group, in place: rest with g.rest_probability, else k semantics (k drawn from
    g.choose, capped at the number of semantics with an available side) chosen uniformly among those;
    on each side the chosen semantics get the first k components of a uniform Dirichlet draw over
    k + 1 (so they sum to less than 1); a semantic without sides takes the smaller of its two draws
    (so neither side's sum passes 1). Unavailable members are left to the caller (set to rest)."""
    members = [i for i, p in enumerate(schema.parameters) if p.group == g.name]
    semantics = list(dict.fromkeys(schema.parameters[i].semantic for i in members))
    n, s = out.shape[0], len(semantics)
    can = np.zeros(s, bool)                                  # semantics with an available side
    for i in members:
        can[semantics.index(schema.parameters[i].semantic)] |= bool(available[i])
    at_rest = rng.random(n) < g.rest_probability
    k = 1 + np.searchsorted(np.cumsum(g.choose), rng.random(n), side="right")
    k = np.minimum(k, int(can.sum()))
    order = np.argsort(rng.random((n, s)), axis=1)           # a random order of the semantics
    # the available ones first, keeping their random order (unchanged when all are available)
    order = np.take_along_axis(order, np.argsort(~can[order], axis=1, kind="stable"), axis=1)
    kmax = len(g.choose)
    draws = {side: rng.dirichlet(np.ones(kmax + 1), size=n) for side in SIDES}
    weight = {side: np.zeros((n, s)) for side in SIDES}
    rows = np.arange(n)
    for slot in range(kmax):
        chosen = order[:, slot] if slot < s else None
        if chosen is None:
            break
        live = (slot < k) & ~at_rest
        for side in SIDES:
            w = _first_k_share(draws[side], k, slot)
            weight[side][rows[live], chosen[live]] = w[live]
    for i in members:
        p = schema.parameters[i]
        j = semantics.index(p.semantic)
        w = weight[p.side][:, j] if p.side else np.minimum(weight["left"][:, j], weight["right"][:, j])
        far = p.high if p.rest == p.low else p.low
        out[:, i] = p.rest + w * (far - p.rest)


def _first_k_share(d: np.ndarray, k: np.ndarray, slot: int) -> np.ndarray:
    """Component `slot` of a uniform Dirichlet over k + 1 parts, made from a draw over kmax + 1 parts:
    the first k components keep their ratio to the remainder, so sum over slots < k is below 1."""
    kmax = d.shape[1] - 1
    first = np.cumsum(d[:, :kmax], axis=1)[np.arange(len(d)), np.clip(k - 1, 0, kmax - 1)]
    rest = d[:, kmax]
    return d[:, slot] / np.maximum(first + rest, 1e-12)


# ---------------------------------------------------------------- loading

def builtin_json(name: str) -> dict:
    """A built-in schema's JSON object (a fresh copy; the file is read once)."""
    return json.loads(_builtin_text(name))


@functools.lru_cache(maxsize=None)
def _builtin_text(name: str) -> str:
    return (BUILTIN_DIR / f"{name}.json").read_text(encoding="utf-8")


def load_schema(spec: str | Path | None = None) -> PoseSchema:
    """A built-in schema by name (None: the default, tha1) or a schema file; SchemaError otherwise."""
    spec = DEFAULT_SCHEMA if spec in (None, "") else spec
    if str(spec) in BUILTIN:
        return parse_schema(builtin_json(str(spec)), str(spec))
    path = Path(spec)
    if not path.is_file():
        raise SchemaError(f"{path}: no such pose schema (built in: {', '.join(BUILTIN)}; or a .json file)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise SchemaError(f"{path}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    return parse_schema(data, str(path))


def parse_schema(data, where: str) -> PoseSchema:
    """Check and build a schema from its JSON object; `where` names it in errors."""
    if not isinstance(data, dict) or data.get("format") != SCHEMA_FORMAT:
        raise SchemaError(f"{where}: not a pose schema (needs \"format\": \"{SCHEMA_FORMAT}\")")
    if data.get("version") != SCHEMA_VERSION:
        raise SchemaError(f"{where}: version {data.get('version')!r} is not {SCHEMA_VERSION}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise SchemaError(f"{where}: \"name\" must be a non-empty string")
    groups = {gname: _group(where, gname, g) for gname, g in _obj(where, "groups", data.get("groups", {})).items()}
    params = data.get("parameters")
    if not isinstance(params, list) or not params:
        raise SchemaError(f"{where}: \"parameters\" must be a non-empty list")
    out: list[Parameter] = []
    seen: set[str] = set()
    for i, p in enumerate(params):
        par = _parameter(f"{where}: parameter {i}", p, groups)
        if par.name in seen:
            raise SchemaError(f"{where}: parameter {i}: duplicate name {par.name!r}")
        seen.add(par.name)
        out.append(par)
    used = {p.group for p in out}
    for gname in groups:
        if gname not in used:
            raise SchemaError(f"{where}: group {gname!r} has no parameters")
    return PoseSchema(name, str(data.get("description", "")), tuple(out), groups, where,
                      json.loads(json.dumps(data)))


def _obj(where: str, what: str, v) -> dict:
    if not isinstance(v, dict):
        raise SchemaError(f"{where}: {what} must be a JSON object")
    return v


def _num(where: str, what: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SchemaError(f"{where}: {what} must be a finite number, got {v!r}")
    return float(v)


def _prob(where: str, what: str, v) -> float:
    x = _num(where, what, v)
    if not 0.0 <= x <= 1.0:
        raise SchemaError(f"{where}: {what} must be in [0, 1], got {v!r}")
    return x


def _group(where: str, name: str, g) -> Group:
    at = f"{where}: group {name!r}"
    g = _obj(at, "a group", g)
    choose = g.get("choose", [1.0])
    if not isinstance(choose, list) or not choose:
        raise SchemaError(f"{at}: choose must be a list of probabilities (for 1, 2, ... semantics)")
    probs = tuple(_prob(at, "choose", c) for c in choose)
    if abs(sum(probs) - 1.0) > 1e-6:
        raise SchemaError(f"{at}: choose must sum to 1, got {sum(probs):g}")
    return Group(name, _prob(at, "rest_probability", g.get("rest_probability", 0.0)), probs)


def _turns(at: str, raw, kind: str) -> tuple[BoneTurn, ...]:
    if not isinstance(raw, list) or not raw:
        raise SchemaError(f"{at}: a {kind} needs \"bones\": a non-empty list of turns")
    out = []
    for t in raw:
        t = _obj(at, "each turn", t)
        names = t.get("bone")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names or not all(isinstance(b, str) and b for b in names):
            raise SchemaError(f"{at}: each turn needs \"bone\": a name or a list of name aliases")
        if t.get("axis") not in AXES:
            raise SchemaError(f"{at}: axis must be one of {', '.join(AXES)}, got {t.get('axis')!r}")
        out.append(BoneTurn(tuple(names), t["axis"], _num(at, "degrees", t.get("degrees"))))
    return tuple(out)


def _parameter(at: str, p, groups: dict[str, Group]) -> Parameter:
    p = _obj(at, "a parameter", p)
    name = p.get("name")
    if not isinstance(name, str) or not name:
        raise SchemaError(f"{at}: \"name\" must be a non-empty string")
    at = f"{at} ({name!r})"
    kind = p.get("kind")
    if kind not in KINDS:
        raise SchemaError(f"{at}: unknown kind {kind!r} (expected {', '.join(KINDS)})")
    rng = p.get("range")
    if not isinstance(rng, list) or len(rng) != 2:
        raise SchemaError(f"{at}: range must be [low, high]")
    low, high = _num(at, "range", rng[0]), _num(at, "range", rng[1])
    if not low < high:
        raise SchemaError(f"{at}: bad range [{rng[0]}, {rng[1]}] (low must be below high)")
    rest = _num(at, "rest", p.get("rest"))
    if not low <= rest <= high:
        raise SchemaError(f"{at}: rest {rest:g} is outside its range [{low:g}, {high:g}]")
    inp = p.get("input")
    if inp not in INPUTS:
        raise SchemaError(f"{at}: input must be one of {', '.join(INPUTS)}, got {inp!r}")
    side = p.get("side")
    if side is not None and side not in SIDES:
        raise SchemaError(f"{at}: side must be left, right or absent, got {side!r}")
    if side is not None and not (name.endswith("_" + side) or name.startswith(side + "_")):
        raise SchemaError(f"{at}: a parameter with side {side!r} must be named ..._{side} or {side}_...")
    morphs, turns = (), ()
    if kind == "morph":
        morphs = p.get("morphs")
        if not isinstance(morphs, list) or not morphs or not all(isinstance(m, str) and m for m in morphs):
            raise SchemaError(f"{at}: a morph needs \"morphs\": a non-empty list of name aliases")
        morphs = tuple(morphs)
    else:
        turns = _turns(at, p.get("bones"), kind)
        if side is not None:
            raise SchemaError(f"{at}: only a morph has a side")
    sampling = p.get("sampling", "uniform")
    group, law, rest_p = None, "uniform", 0.0
    if isinstance(sampling, str):
        law = sampling
    else:
        sampling = _obj(at, "sampling", sampling)
        group = sampling.get("group")
        law = sampling.get("law", "uniform")
        rest_p = _prob(at, "rest_probability", sampling.get("rest_probability", 0.0))
    if law not in LAWS:
        raise SchemaError(f"{at}: sampling law must be one of {', '.join(LAWS)}, got {law!r}")
    if group is not None:
        if group not in groups:
            raise SchemaError(f"{at}: unknown group {group!r} (not in \"groups\")")
        if rest != low and rest != high:
            raise SchemaError(f"{at}: a parameter of an exclusive group must rest at an end of its range")
    mirror = p.get("mirror", "keep")
    if mirror not in ("keep", "negate"):
        raise SchemaError(f"{at}: mirror must be keep or negate, got {mirror!r}")
    return Parameter(name, kind, low, high, rest, inp, morphs, side, turns, group, law, rest_p, mirror)
