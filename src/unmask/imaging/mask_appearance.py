"""Training-time variety beyond the mask renderer: new mask materials, photo degradations, clean faces.

The renderer (:mod:`unmask.imaging.mask_renderer`) draws five designs in their usual colours. Real
masks come in any colour and material, lit from anywhere, photographed through any camera, and
many faces in users' photos wear no mask at all. A model that only ever saw the renderer's masks
learns what *they* look like, and that the lower face is always a mask. This module widens what
training shows, without a second generator to maintain:

* :func:`vary_material` re-draws the material of an already rendered mask inside its map: a new
  base colour (white, black, grey, any hue, skin-like tones), the rendered shading and pleats with
  their contrast changed, a lighting gradient, soft folds, specular highlights, and real photo
  texture taken from another training face.
* :func:`degrade_pair` applies one camera degradation (blur, sensor noise, JPEG, exposure) to the
  masked input and to its target alike, so the restored region learns the grain and softness of
  the photo around it instead of being cleaner than its surroundings.
* :func:`paste_cutout` puts a real mask, cut out of a photo of someone wearing it and stored in
  the canonical aligned frame (RGBA), onto the face, with a small random similarity jitter.
* A share of faces is shown with no mask at all (target = input, empty mask map; see
  :class:`unmask.models.data.FreshMasks`), so that a composite network's mask head learns to
  leave unmasked faces alone.

Every function is a pure function of its inputs and the ``numpy.random.Generator`` it is given.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

__all__ = ["degrade_pair", "paste_cutout", "vary_material"]


def _base_colour(rng: np.random.Generator) -> np.ndarray:
    """A mask colour: mostly the whites, blacks and blues of real masks, then any hue and skin-like tones."""
    kind = rng.choice(["white", "black", "grey", "blue", "hue", "skin"], p=[0.25, 0.2, 0.12, 0.13, 0.2, 0.1])
    if kind == "white":
        v = rng.uniform(0.84, 1.0)
        rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.08), v)
    elif kind == "black":
        rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.05, 0.25))
    elif kind == "grey":
        rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.1), rng.uniform(0.3, 0.8))
    elif kind == "blue":
        rgb = colorsys.hsv_to_rgb(rng.uniform(0.52, 0.62), rng.uniform(0.2, 0.6), rng.uniform(0.6, 0.95))
    elif kind == "hue":
        rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.2, 0.95), rng.uniform(0.2, 0.95))
    else:  # beige / tan fabrics are the hardest to tell from skin
        rgb = colorsys.hsv_to_rgb(rng.uniform(0.04, 0.11), rng.uniform(0.2, 0.5), rng.uniform(0.45, 0.9))
    return np.asarray(rgb, dtype=np.float32) * 255.0


def _folds(shape: tuple[int, int], rng: np.random.Generator, size: int) -> np.ndarray:
    """A multiplicative field of a few soft creases (random lines, blurred) around 1."""
    field = np.zeros(shape, np.float32)
    h, w = shape
    for _ in range(int(rng.integers(1, 5))):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(field, p0, p1, float(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0)),
                 max(1, round(size / 48)), cv2.LINE_AA)
    field = cv2.GaussianBlur(field, (0, 0), max(0.6, size / 40))
    peak = float(np.abs(field).max())
    return 1.0 + (field / peak if peak > 0 else field) * np.float32(rng.uniform(0.05, 0.25))


def vary_material(masked: np.ndarray, mask: np.ndarray, donor: np.ndarray | None,
                  rng: np.random.Generator) -> np.ndarray:
    """``masked`` with the material inside ``mask`` re-drawn (HxWx3 uint8; pixels outside the map unchanged).

    The rendered mask's own luminance keeps its shape, pleats and seams; its contrast, colour,
    lighting and texture are drawn anew. ``donor`` (another face crop of the same size, or None)
    lends real photo texture: its high frequencies as grain, or now and then its pixels as a print.
    """
    inside = np.asarray(mask) > 0
    if not inside.any():
        return masked.copy()
    size = masked.shape[0]
    image = masked.astype(np.float32)
    grey = cv2.cvtColor(masked, cv2.COLOR_RGB2GRAY).astype(np.float32)
    structure = grey / max(float(grey[inside].mean()), 1.0)
    # the renderer's shading and pleats, softened or exaggerated
    lum = 1.0 + (structure - 1.0) * np.float32(rng.uniform(0.4, 2.0))
    # light from a random side
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size) - np.float32(0.5)
    angle = rng.uniform(0, 2 * np.pi)
    lum *= 1.0 + np.float32(rng.uniform(0.0, 0.5)) * (np.cos(angle) * xx + np.sin(angle) * yy)
    if rng.random() < 0.6:
        lum *= _folds((size, size), rng, size)
    colour = _base_colour(rng)
    rgb = lum[..., None] * colour
    if donor is not None and rng.random() < 0.5:
        # real texture: the donor's detail (a random patch, rescaled) as grain on the material
        patch = _donor_patch(donor, rng, size).astype(np.float32)
        detail = patch - cv2.GaussianBlur(patch, (0, 0), max(1.0, size / 24))
        rgb += detail.mean(axis=2, keepdims=True) * np.float32(rng.uniform(0.3, 1.2))
    elif donor is not None and rng.random() < 0.25:
        # a printed fabric: the donor's pixels themselves, shaded like the mask
        rgb = _donor_patch(donor, rng, size).astype(np.float32) * lum[..., None]
    if rng.random() < 0.4:  # specular highlights of synthetic and coated fabrics
        for _ in range(int(rng.integers(1, 3))):
            cy, cx = np.argwhere(inside)[int(rng.integers(0, int(inside.sum())))]
            sigma = size * rng.uniform(0.03, 0.1)
            blob = np.exp(-((yy * size - (cy - size / 2)) ** 2 + (xx * size - (cx - size / 2)) ** 2) / (2 * sigma**2))
            rgb += (blob * np.float32(rng.uniform(40, 120)))[..., None]
    # fabric grain
    rgb += rng.normal(0.0, rng.uniform(0.0, 6.0), size=(size, size, 1)).astype(np.float32)
    out = image.copy()
    out[inside] = rgb[inside]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _donor_patch(donor: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square region of ``donor`` (a third to all of it), resized to ``size``."""
    side = int(rng.integers(max(4, donor.shape[0] // 3), donor.shape[0] + 1))
    y0 = int(rng.integers(0, donor.shape[0] - side + 1))
    x0 = int(rng.integers(0, donor.shape[1] - side + 1))
    patch = np.ascontiguousarray(donor[y0:y0 + side, x0:x0 + side, :3])
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_LINEAR)


def degrade_pair(masked: np.ndarray, clean: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One random camera degradation applied alike to ``masked`` and ``clean`` (HxWx3 uint8 each).

    The same blur, the same noise field and the same exposure change go to both, so outside the
    mask the pair stays identical (a composite network still passes those pixels through);
    JPEG is applied to each at the same quality.
    """
    pair = [masked.astype(np.float32), clean.astype(np.float32)]
    if rng.random() < 0.5:
        sigma = float(rng.uniform(0.3, 1.0))
        pair = [cv2.GaussianBlur(p, (0, 0), sigma) for p in pair]
    if rng.random() < 0.5:
        gain, gamma = float(rng.uniform(0.75, 1.25)), float(rng.uniform(0.8, 1.25))
        pair = [255.0 * np.clip(p * gain / 255.0, 0, 1) ** gamma for p in pair]
    if rng.random() < 0.6:
        noise = rng.normal(0.0, rng.uniform(1.0, 8.0), size=masked.shape[:2] + (1,)).astype(np.float32)
        if rng.random() < 0.5:  # colour noise, not only luminance
            noise = noise + rng.normal(0.0, 2.0, size=masked.shape).astype(np.float32)
        pair = [p + noise for p in pair]
    out = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in pair]
    if rng.random() < 0.5:
        quality = int(rng.integers(35, 95))
        out = [_jpeg(p, quality) for p in out]
    return out[0], out[1]


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])


def paste_cutout(crop: np.ndarray, cutout: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(masked crop, mask map)``: the RGBA ``cutout`` (canonical aligned frame, any size) over ``crop``.

    The cut-out is scaled to the crop, jittered (scale 0.94-1.08, rotation up to 6 degrees, shift up
    to 3 % of the side, mirrored half of the time) and alpha-composited. The map is every pixel the
    cut-out covers with alpha >= 0.1; nothing outside it changes.
    """
    size = crop.shape[0]
    if cutout.ndim != 3 or cutout.shape[2] != 4:
        raise ValueError(f"a mask cut-out must be HxWx4 RGBA, got {cutout.shape}")
    rgba = cv2.resize(cutout, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    if rng.random() < 0.5:
        rgba = rgba[:, ::-1]
    centre = (size / 2 + rng.uniform(-0.03, 0.03) * size, size * 0.62)  # about the nose tip: masks pivot there
    matrix = cv2.getRotationMatrix2D(centre, float(rng.uniform(-6, 6)), float(rng.uniform(0.94, 1.08)))
    matrix[:, 2] += rng.uniform(-0.03, 0.03, 2) * size
    rgba = cv2.warpAffine(np.ascontiguousarray(rgba), matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = rgba[..., 3] / 255.0
    alpha[alpha < 0.1] = 0.0
    out = crop.astype(np.float32)
    out += alpha[..., None] * (rgba[..., :3] - out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), (alpha > 0).astype(np.uint8)
