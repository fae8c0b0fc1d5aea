"""The numpy-backed MMD model that every other module works on.

`renderer.modelfile.load_model(path)` fills one `MMDModel` from a .pmx or .pmd
file. After loading, everything per-vertex is a numpy array; nothing
downstream walks vertices in Python.

Coordinates are MMD's own (left-handed): +x toward the character's LEFT,
+y up, the character faces -z. Units are the model's own.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class ModelFormat(str, enum.Enum):
    PMX = "pmx"
    PMD = "pmd"


class SkinningType(enum.IntEnum):
    """Per-vertex deform type, numbered as in PMX."""
    BDEF1 = 0
    BDEF2 = 1
    BDEF4 = 2
    SDEF = 3
    QDEF = 4


class MaterialFlag(enum.IntFlag):
    """PMX material drawing flags (PMD materials are mapped onto these)."""
    NONE = 0
    DOUBLE_SIDED = 0x01
    GROUND_SHADOW = 0x02
    SELF_SHADOW_MAP = 0x04
    SELF_SHADOW = 0x08
    EDGE = 0x10
    VERTEX_COLOR = 0x20
    POINT = 0x40
    LINE = 0x80


class SphereMode(enum.IntEnum):
    NONE = 0
    MULTIPLY = 1
    ADD = 2
    SUBTEXTURE = 3


class BoneFlag(enum.IntFlag):
    """PMX bone flags (PMD bones are mapped onto these)."""
    NONE = 0
    TAIL_IS_BONE = 0x0001
    ROTATABLE = 0x0002
    TRANSLATABLE = 0x0004
    VISIBLE = 0x0008
    ENABLED = 0x0010
    IK = 0x0020
    INHERIT_LOCAL = 0x0080
    APPEND_ROTATION = 0x0100
    APPEND_TRANSLATION = 0x0200
    FIXED_AXIS = 0x0400
    LOCAL_AXIS = 0x0800
    AFTER_PHYSICS = 0x1000
    EXTERNAL_PARENT = 0x2000


class MorphKind(enum.IntEnum):
    """PMX morph types, numbered as in the file."""
    GROUP = 0
    VERTEX = 1
    BONE = 2
    UV = 3
    UV1 = 4
    UV2 = 5
    UV3 = 6
    UV4 = 7
    MATERIAL = 8
    FLIP = 9
    IMPULSE = 10


MATERIAL_MORPH_WIDTH = 28


class MaterialMorphColumn:
    """Column layout of a material morph row (`Morph.values`, and of `PosedMesh.material_morph`).

    In a morph row every column is an operand (multiply or add). In a posed array,
    the first 16 columns hold the material's effective values and TINTS holds
    RGBA tints for the texture, sphere and toon colours (1 = unchanged).
    Row width: MATERIAL_MORPH_WIDTH.
    """
    DIFFUSE = slice(0, 4)          # RGBA
    DIFFUSE_ALPHA = 3
    SPECULAR = slice(4, 7)         # RGB
    SPECULAR_POWER = 7
    AMBIENT = slice(8, 11)         # RGB
    EDGE_COLOR = slice(11, 15)     # RGBA
    EDGE_SIZE = 15
    TEXTURE_TINT = slice(16, 20)   # RGBA
    TEXTURE_TINT_ALPHA = 19
    SPHERE_TINT = slice(20, 24)    # RGBA
    TOON_TINT = slice(24, 28)      # RGBA
    TINTS = slice(16, 28)          # TEXTURE_TINT, SPHERE_TINT, TOON_TINT


class MorphPanel(enum.IntEnum):
    """Which MMD slider panel a morph sits on."""
    SYSTEM = 0
    EYEBROW = 1
    EYE = 2
    MOUTH = 3
    OTHER = 4


@dataclass
class Material:
    name: str
    name_en: str
    diffuse: np.ndarray            # (4,) float32 RGBA
    specular: np.ndarray           # (3,) float32
    specular_power: float
    ambient: np.ndarray            # (3,) float32
    flags: MaterialFlag
    edge_color: np.ndarray         # (4,) float32
    edge_size: float
    texture: str | None            # path as written in the file ('\\' kept), None = none
    sphere: str | None
    sphere_mode: SphereMode
    toon: str | None               # custom toon file path, or None
    toon_shared: int | None        # shared toon index 0..9 (toon{i+1:02d}.bmp), or None
    index_start: int               # first index into MMDModel.indices.ravel()
    index_count: int               # number of indices (3 per triangle)
    comment: str = ""


@dataclass
class Bone:
    name: str
    name_en: str
    position: np.ndarray           # (3,) float32, rest position in model space
    parent: int                    # -1 = root
    deform_layer: int
    flags: BoneFlag
    append_parent: int = -1        # 付与 parent, -1 = none
    append_weight: float = 0.0
    fixed_axis: np.ndarray | None = None
    local_axis_x: np.ndarray | None = None
    local_axis_z: np.ndarray | None = None
    ik_target: int = -1            # IK is parsed, not evaluated (head-only poses)
    ik_links: list[int] = field(default_factory=list)
    # where the bone's tail (the end MMD draws it to) is: bone `tail_bone`, or, when that is -1,
    # `position + tail_offset`
    tail_bone: int = -1
    tail_offset: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))  # (3,) float32


@dataclass
class Morph:
    """One morph. Which arrays are set depends on `kind`:

    VERTEX:          indices (K,) int32, offsets (K,3) float32
    UV, UV1..UV4:    indices (K,) int32, offsets (K,4) float32
    BONE:            indices (K,) bone indices, translations (K,3), rotations (K,4) quaternion x,y,z,w
    GROUP, FLIP:     indices (K,) morph indices, weights (K,) float32
    MATERIAL:        indices (K,) material index (-1 = all), operations (K,) uint8 (0 mul, 1 add),
                     values (K, MATERIAL_MORPH_WIDTH) float32, columns named by
                     MaterialMorphColumn
    IMPULSE:         indices (K,) rigid-body indices (data kept for completeness, never evaluated)
    """
    name: str
    name_en: str
    panel: MorphPanel
    kind: MorphKind
    indices: np.ndarray
    offsets: np.ndarray | None = None
    translations: np.ndarray | None = None
    rotations: np.ndarray | None = None
    weights: np.ndarray | None = None
    operations: np.ndarray | None = None
    values: np.ndarray | None = None


@dataclass
class MMDModel:
    path: Path
    format: ModelFormat
    version: float
    name: str
    name_en: str
    comment: str
    # per vertex (V = vertex count)
    positions: np.ndarray          # (V,3) float32
    normals: np.ndarray            # (V,3) float32
    uvs: np.ndarray                # (V,2) float32
    extra_uvs: np.ndarray          # (A,V,4) float32, A = 0..4 additional UVs
    skin_type: np.ndarray          # (V,) uint8 SkinningType
    bone_indices: np.ndarray       # (V,4) int32, unused slots = 0 with weight 0
    bone_weights: np.ndarray       # (V,4) float32, rows sum to 1
    sdef_c: np.ndarray             # (V,3) float32 (zeros unless SDEF)
    sdef_r0: np.ndarray            # (V,3) float32
    sdef_r1: np.ndarray            # (V,3) float32
    edge_scale: np.ndarray         # (V,) float32
    # faces
    indices: np.ndarray            # (F,3) uint32 triangles, in material order
    # tables
    textures: list[str]            # PMX texture table / PMD file names as written
    materials: list[Material]
    bones: list[Bone]
    morphs: list[Morph]
    # non-fatal oddities found while loading (dropped bad references, ...); one line each
    warnings: list[str] = field(default_factory=list)

    @property
    def vertex_count(self) -> int:
        return int(self.positions.shape[0])

    @property
    def triangle_count(self) -> int:
        return int(self.indices.shape[0])

    def bone_index(self, name: str) -> int:
        """Index of the bone called `name`, or -1."""
        for i, b in enumerate(self.bones):
            if b.name == name:
                return i
        return -1

    def morph_index(self, name: str) -> int:
        """Index of the morph called `name`, or -1."""
        for i, m in enumerate(self.morphs):
            if m.name == name:
                return i
        return -1
