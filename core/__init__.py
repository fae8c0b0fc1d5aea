"""What every layer of thactl may use: pose facts and the pose check (`core.pose`), atomic file
writes (`core.atomicfile`), the error base and one-line messages (`core.errors`), image grids and
contact sheets (`core.imagegrid`).

`core` imports nothing of the project and nothing beyond the standard library, numpy and (inside
`imagegrid.contact_sheet`) Pillow, so the renderer, the data reader, the trainer, the networks, the
tracker and the server can all take these from here without pulling in OpenGL or torch
(`tests/test_import_rules.py`).
"""
