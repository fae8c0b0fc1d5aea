"""Running trained networks on a user's drawing.

  weights.py    which weight files, loading them for inference (one place), picking the device
  drawing.py    reading and checking an input drawing (size, alpha, placement), writing PNGs
  runner.py     PoserRunner: batched, cached, fp16-on-CUDA inference through models.poser
  motion.py     pose sequences (built-in motions, CSV files)
  animation.py  frames -> GIF / MP4
  export.py     the poser as ONNX, checked against torch
"""
