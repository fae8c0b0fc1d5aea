"""Face tracking: poses for THA from a real face (`thactl track`, `animate --video`, the puppet page).

frames.py (videos and image folders) -> facemesh.py (the tracker) -> geometry.py (head rotation,
eye/mouth ratios) -> calibration.py (the neutral pose) -> smoothing.py -> posemap.py (pose vectors);
track.py runs the chain on a clip, preview.py shows what the tracker saw. Importing this package
imports nothing heavy; MediaPipe is loaded when a tracker is made.
"""
