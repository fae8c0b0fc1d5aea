"""Generates tests/data/ssim_reference.npz (run once from the repo root; needs scikit-image)."""
import json, numpy as np, skimage
from skimage.metrics import structural_similarity
from PIL import Image, ImageFilter
rng = np.random.default_rng(1234)
H, W = 48, 40
yy, xx = np.mgrid[0:H, 0:W]
base = np.zeros((H, W, 4), np.float64)
base[..., 0] = xx / W
base[..., 1] = yy / H
base[..., 2] = 0.5 + 0.5 * np.sin(xx / 3.0) * np.cos(yy / 5.0)
disc = ((yy - 24) ** 2 + (xx - 20) ** 2) < 15 ** 2
base[..., 3] = disc
base[~disc, :3] = 0
a0 = np.clip(np.rint(base * 255), 0, 255).astype(np.uint8)
pairs = []
pairs.append((a0, a0.copy()))
pairs.append((a0, np.clip(a0 + rng.normal(0, 6, a0.shape), 0, 255).astype(np.uint8)))
pairs.append((a0, np.clip(a0 + rng.normal(0, 60, a0.shape), 0, 255).astype(np.uint8)))
pairs.append((a0, np.roll(a0, (2, -3), axis=(0, 1))))
pairs.append((a0, np.asarray(Image.fromarray(a0, "RGBA").filter(ImageFilter.GaussianBlur(1.5)))))
pairs.append((a0, np.clip(a0.astype(np.float64) * 0.6 + 40, 0, 255).astype(np.uint8)))
pairs.append((rng.integers(0, 256, a0.shape, dtype=np.uint8), rng.integers(0, 256, a0.shape, dtype=np.uint8)))
A = np.stack([p[0] for p in pairs]); B = np.stack([p[1] for p in pairs])
vals = np.array([structural_similarity(a / 255.0, b / 255.0, channel_axis=-1, data_range=1.0,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
                 for a, b in zip(A.astype(np.float64), B.astype(np.float64))])
np.savez_compressed("tests/data/ssim_reference.npz", a=A, b=B, ssim=vals,
                    note=np.array(f"scikit-image {skimage.__version__} structural_similarity(a/255, b/255, "
                                  "channel_axis=-1, data_range=1, gaussian_weights=True, sigma=1.5, "
                                  "use_sample_covariance=False), float64 inputs"))
print(vals)
