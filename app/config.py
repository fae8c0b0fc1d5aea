"""What `thactl serve` was given: the only folders and files its pages may read or write."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    models: Path | None = None          # model page: the collection (read; overrides written beside models)
    overrides: Path | None = None       # model page: the user's override file, when given
    drawings: Path | None = None        # puppet page: a folder of drawings it may read
    weights: Path | None = None         # puppet page: network weights (folder)
    device: str = "auto"
    precision: str = "auto"             # puppet page: auto | fp32 | fp16, as `thactl pose --precision`
    schema: str = "tha1"                # model page: the pose schema its parameters and sliders follow
    max_body: int = 16 * 1024 * 1024    # bytes; larger requests get 413
