#!/usr/bin/env python3
"""Generates the image decoding / preprocessing fixtures in tests/fixtures/images/.

    pip install pillow numpy transformers      (torch is not needed)
    python scripts/make_image_fixtures.py
    # then, in an environment with pillow<13 (same transformers):
    python scripts/make_image_fixtures.py     # adds index_pillow12.json

Writes small synthetic but photo-like images (gradients, shapes, stripes,
mild noise) of odd sizes in every format the C decoder handles, then records:
  - Pillow's decoded RGB (`Image.open(f).convert("RGB")`: alpha dropped), and
    for images with transparency also transformers' alpha handling
    (composited onto white by `convert_to_rgb`);
  - transformers' pixel_values for four preprocessing presets, computed by
    the PIL-backend image processors (CLIPImageProcessorPil for clip 224 and
    llava 336, LlavaImageProcessorPil with do_pad for llava_pad, BlipImageProcessorPil
    for blip2 224), each fed the RGB image above;
  - a few tiny-size cases with custom preprocessor_config.json files, whose
    float32 pixel_values are stored verbatim.

Storage (compact, no numpy format needed in C): index.json plus refs.bin, a
concatenation of zlib streams. uint8 arrays are planes [C, H, W], PNG-filtered
per row (filter byte + residuals, one byte per sample) before compression.
Every image x preset records the CRC-32 of transformers' float32 pixel_values
(little-endian bytes), their float64 sum and sum of squares; the pairs in FULL
also store the whole array, as the uint8 image right before rescale/normalise
(the script asserts that rescaling + normalising it in float32 reproduces
transformers' pixel_values bit for bit). The tiny custom cases store float32.
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
import PIL
from PIL import Image, ImageDraw

import transformers
from transformers.image_transforms import convert_to_rgb
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "images")
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def scene(w, h, seed):
    """A landscape-like RGB picture: sky and ground gradients, a sun, hills,
    a striped and a checkered patch (aliasing shows there), thin diagonal
    lines, and mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    img[..., 0] = 70 + 140 * y / h
    img[..., 1] = 110 + 90 * x / w
    img[..., 2] = 230 - 150 * y / h
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    d.ellipse([0.62 * w, 0.08 * h, 0.62 * w + 0.22 * min(w, h), 0.08 * h + 0.22 * min(w, h)],
              fill=(250, 220, 90))
    d.polygon([(0, h), (0, 0.62 * h), (0.3 * w, 0.45 * h), (0.55 * w, 0.66 * h), (0.8 * w, 0.5 * h),
               (w, 0.7 * h), (w, h)], fill=(40, 120, 50))
    for i in range(0, w, 29):
        d.line([(i, h), (i + 0.4 * h, 0.55 * h)], fill=(20 + (i * 3) % 200, 60, 30), width=1)
    arr = np.asarray(pil).astype(np.float64)
    sx0, sy0, sw, sh = int(0.05 * w), int(0.1 * h), max(2, w // 8), max(2, h // 6)
    sw, sh = min(sw, w - sx0), min(sh, h - sy0)
    stripes = (np.arange(sw) // 3) % 2
    arr[sy0:sy0 + sh, sx0:sx0 + sw] = np.where(stripes[None, :, None] == 1, 235.0, 25.0)
    cx0, cy0 = int(0.4 * w), int(0.75 * h)
    cw, ch = max(2, w // 8), max(2, h // 8)
    ch, cw = min(ch, h - cy0), min(cw, w - cx0)
    cy, cx = np.mgrid[0:ch, 0:cw]
    checker = ((cy // 4 + cx // 4) % 2).astype(np.float64)
    arr[cy0:cy0 + ch, cx0:cx0 + cw] = (checker * 200 + 30)[..., None] * np.array([1.0, 0.8, 0.6])
    # Noise on one patch only: it shows resampling errors as well as noise
    # everywhere would, while keeping the stored references compressible.
    ny0, nx0 = int(0.55 * h), int(0.6 * w)
    arr[ny0:ny0 + max(1, h // 8), nx0:nx0 + max(1, w // 8)] += rng.normal(0, 6.0, arr[ny0:ny0 + max(1, h // 8), nx0:nx0 + max(1, w // 8)].shape)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def alpha_channel(w, h):
    """Opaque, transparent and semi-transparent regions, soft edges."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a = np.full((h, w), 255.0)
    a[: h // 3, : w // 3] = 0
    a[h // 2:, w // 2:] = 96
    r = np.hypot(x - 0.7 * w, y - 0.3 * h)
    a = np.where(r < 0.15 * min(w, h), np.clip(255 * r / (0.15 * min(w, h)), 0, 255), a)
    return a.astype(np.uint8)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_rgb16_interlaced(arr16):
    """Pillow cannot write 16-bit RGB or interlaced PNGs: a minimal writer
    (Adam7 passes, filter type 0)."""
    h, w, _ = arr16.shape
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        sub = arr16[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in sub:
            raw += b"\x00" + row.astype(">u2").tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(bytes(raw), 9))
            + png_chunk(b"IEND", b""))


def encode(pil, fmt, **kw):
    b = io.BytesIO()
    pil.save(b, fmt, **kw)
    return b.getvalue()


def make_images():
    """Returns [(file name, bytes)]."""
    out = []
    out.append(("landscape.jpg", encode(Image.fromarray(scene(397, 263, 1)), "JPEG", quality=90)))
    out.append(("portrait_progressive.jpg",
                encode(Image.fromarray(scene(171, 265, 2)), "JPEG", quality=85, progressive=True, subsampling=1)))
    gray = scene(173, 131, 3).mean(axis=2).astype(np.uint8)
    out.append(("gray.jpg", encode(Image.fromarray(gray, "L"), "JPEG", quality=88)))
    s = scene(150, 110, 4).astype(np.int32)
    k = (np.linspace(0, 120, 150)[None, :] * np.ones((110, 1))).astype(np.int32)
    cmyk = np.stack([255 - s[..., 0], 255 - s[..., 1], 255 - s[..., 2], k], axis=-1)
    cmyk[..., :3] = np.clip(cmyk[..., :3] - k[..., None] // 2, 0, 255)
    out.append(("cmyk.jpg", encode(Image.fromarray(cmyk.astype(np.uint8), "CMYK"), "JPEG", quality=90)))
    out.append(("tiny.png", encode(Image.fromarray(scene(5, 3, 5)), "PNG")))
    rgba = np.dstack([scene(301, 217, 6), alpha_channel(301, 217)])
    out.append(("alpha.png", encode(Image.fromarray(rgba, "RGBA"), "PNG")))
    out.append(("gray.png", encode(Image.fromarray(scene(129, 97, 7)[..., 1], "L"), "PNG")))
    g16 = (np.linspace(0, 1, 67)[None, :] * np.linspace(0.2, 1, 45)[:, None] * 1200).astype(np.uint16)
    out.append(("gray16.png", encode(Image.fromarray(g16), "PNG")))
    bw = Image.fromarray(scene(45, 29, 8)[..., 0]).convert("1")
    out.append(("bilevel.png", encode(bw, "PNG")))
    pal = Image.fromarray(scene(143, 211, 9)).quantize(colors=16)
    out.append(("palette4_trns.png", encode(pal, "PNG", bits=4, transparency=3)))
    s16 = scene(161, 119, 10).astype(np.uint16) * 257 + np.arange(161, dtype=np.uint16)[None, :, None]
    out.append(("rgb16_interlaced.png", write_png_rgb16_interlaced(s16)))
    out.append(("wide.png", encode(Image.fromarray(scene(400, 37, 11)), "PNG")))
    out.append(("lossy.webp", encode(Image.fromarray(scene(233, 157, 12)), "WEBP", quality=80)))
    la = np.dstack([scene(257, 300, 13), alpha_channel(257, 300)])
    out.append(("lossless_alpha.webp", encode(Image.fromarray(la, "RGBA"), "WEBP", lossless=True)))
    la2 = np.dstack([scene(97, 61, 14), alpha_channel(97, 61)])
    out.append(("lossy_alpha.webp", encode(Image.fromarray(la2, "RGBA"), "WEBP", quality=70)))
    return out


def has_transparency(im):
    return "A" in im.getbands() or im.info.get("transparency") is not None


def processors():
    common = dict(image_mean=MEAN, image_std=STD, resample=3, do_rescale=True, rescale_factor=1 / 255,
                  do_normalize=True, do_convert_rgb=True)
    return {
        "clip": CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                                      do_center_crop=True, **common),
        "llava": CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                       do_center_crop=True, **common),
        "llava_pad": LlavaImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                            do_center_crop=True, do_pad=True, **common),
        "blip2": BlipImageProcessorPil(size={"height": 224, "width": 224}, **common),
    }


# The (image, preset) pairs whose pixel_values are stored in full (the rest
# as CRC-32 of the float32 bytes, sum and sum of squares, to stay within the
# fixture budget): every preset at least twice, downscale and upscale on both
# axes, extreme aspect ratio, tiny input.
FULL = {
    "landscape.jpg": ("clip", "blip2"),
    "lossless_alpha.webp": ("llava", "llava_pad", "blip2"),
    "alpha.png": ("clip", "llava_pad"),
    "tiny.png": ("clip", "llava", "llava_pad", "blip2"),
    "wide.png": ("clip", "llava", "llava_pad", "blip2"),
}


# Tiny cases: (name, preprocessor_config.json contents, processor class).
CUSTOM = [
    ("custom_clip", {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": 20},
                     "resample": 3, "do_center_crop": True, "crop_size": {"height": 18, "width": 17},
                     "do_rescale": True, "rescale_factor": 0.00392156862745098, "do_normalize": True,
                     "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3], "do_convert_rgb": True},
     CLIPImageProcessorPil),
    ("custom_llava_pad", {"image_processor_type": "LlavaImageProcessor", "size": {"shortest_edge": 23},
                          "crop_size": {"height": 21, "width": 21}, "do_pad": True, "resample": 3,
                          "image_mean": MEAN, "image_std": STD}, LlavaImageProcessorPil),
    ("custom_blip", {"image_processor_type": "BlipImageProcessor", "size": {"height": 19, "width": 26},
                     "resample": 3, "do_rescale": True, "rescale_factor": 0.00392156862745098,
                     "do_normalize": True, "image_mean": MEAN, "image_std": STD}, BlipImageProcessorPil),
    ("custom_crop_pads", {"image_processor_type": "CLIPImageProcessor", "do_resize": False,
                          "do_center_crop": True, "crop_size": {"height": 9, "width": 4},
                          "image_mean": MEAN, "image_std": STD}, CLIPImageProcessorPil),
]


def kwargs_from_config(cfg):
    return {k: v for k, v in cfg.items() if k != "image_processor_type"}


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def png_filter(arr):
    """PNG's five row filters (one byte per sample, so the left neighbour is
    the previous sample), chosen per row by the smallest sum of |residual|;
    each plane starts fresh (the row above the first is zeros). Output: for
    each row, its filter type byte and the residuals."""
    out = bytearray()
    for plane in arr.astype(np.int32):
        prev = np.zeros(plane.shape[1], np.int32)
        for row in plane:
            left = np.concatenate([[0], row[:-1]])
            upleft = np.concatenate([[0], prev[:-1]])
            preds = [0 * row, left, prev, (left + prev) // 2, paeth(left, prev, upleft)]
            res = [(row - p) & 0xFF for p in preds]
            cost = [np.sum(np.minimum(r, 256 - r)) for r in res]
            best = int(np.argmin(cost))
            out.append(best)
            out += res[best].astype(np.uint8).tobytes()
            prev = row
    return bytes(out)


class Blob:
    def __init__(self):
        self.data = bytearray()

    def add_u8(self, arr):
        """arr: uint8 [planes, rows, cols]; stores it PNG-filtered and deflated."""
        z = zlib.compress(png_filter(arr), 9)
        ref = {"offset": len(self.data), "bytes": len(z), "filter": "png"}
        self.data += z
        return ref

    def add_f32(self, arr):
        z = zlib.compress(np.ascontiguousarray(arr, dtype="<f4").tobytes(), 9)
        ref = {"offset": len(self.data), "bytes": len(z), "filter": "none"}
        self.data += z
        return ref


def rescale_normalise(u8_chw, mean, std, factor):
    """What the PIL backend does after resize/crop: uint8 -> float64 * factor ->
    float32, then (x - mean) / std in float32."""
    x = (u8_chw.astype(np.float64) * factor).astype(np.float32)
    m = np.array(mean, dtype=np.float32)[:, None, None]
    s = np.array(std, dtype=np.float32)[:, None, None]
    return (x - m) / s


def invert_normalise(pv, mean, std, factor):
    """Recovers the uint8 image from pixel_values (exact: each level maps to a
    distinct float), then checks the round trip bit for bit."""
    m = np.array(mean, dtype=np.float64)[:, None, None]
    s = np.array(std, dtype=np.float64)[:, None, None]
    u8 = np.clip(np.rint((pv.astype(np.float64) * s + m) / factor), 0, 255).astype(np.uint8)
    back = rescale_normalise(u8, mean, std, factor)
    diff = float(np.max(np.abs(back - pv)))
    assert diff == 0.0, f"reconstruction differs by {diff}"
    return u8


def pixel_value_record(pv):
    return {"shape": list(pv.shape), "crc32": zlib.crc32(pv.astype("<f4").tobytes()),
            "sum": float(pv.astype(np.float64).sum()), "sumsq": float((pv.astype(np.float64) ** 2).sum())}


def write_pillow12_index():
    """Run under Pillow <= 12 (whose resize always starts with the horizontal
    pass): records CRC-32s of the decoded RGB and of every preset's
    pixel_values for the images already in the fixture folder."""
    with open(os.path.join(ROOT, "index.json")) as fh:
        index = json.load(fh)
    procs = processors()
    out = {"generator": "scripts/make_image_fixtures.py", "pillow": PIL.__version__,
           "transformers": transformers.__version__, "images": []}
    for entry in index["images"]:
        im = Image.open(os.path.join(ROOT, entry["file"]))
        rgb = np.ascontiguousarray(np.asarray(im.convert("RGB")))
        rec = {"file": entry["file"], "decoded_crc32": zlib.crc32(rgb.tobytes()), "refs": {}}
        for name, proc in procs.items():
            rec["refs"][name] = pixel_value_record(proc(Image.fromarray(rgb), return_tensors="np")["pixel_values"][0])
        out["images"].append(rec)
    with open(os.path.join(ROOT, "index_pillow12.json"), "w") as fh:
        json.dump(out, fh, indent=1)
    print(f"wrote index_pillow12.json (Pillow {PIL.__version__})")


def main():
    if int(PIL.__version__.split(".")[0]) < 13:
        return write_pillow12_index()
    os.makedirs(ROOT, exist_ok=True)
    for f in os.listdir(ROOT):
        if os.path.isfile(os.path.join(ROOT, f)) and f != "index_pillow12.json":
            os.remove(os.path.join(ROOT, f))
    blob = Blob()
    procs = processors()
    index = {"generator": "scripts/make_image_fixtures.py", "pillow": PIL.__version__,
             "transformers": transformers.__version__, "numpy": np.__version__,
             "presets": {name: {"mean": MEAN, "std": STD, "rescale_factor": 1 / 255} for name in procs},
             "images": [], "custom": []}
    images = make_images()
    for fname, data in images:
        with open(os.path.join(ROOT, fname), "wb") as fh:
            fh.write(data)
        im = Image.open(io.BytesIO(data))
        im.load()
        rgb = np.asarray(im.convert("RGB"))
        entry = {"file": fname, "format": im.format.lower(), "mode": im.mode, "width": im.width,
                 "height": im.height, "decoded": blob.add_u8(rgb.transpose(2, 0, 1))}
        if has_transparency(im):
            white = convert_to_rgb(im, return_numpy=True)
            entry["decoded_white"] = blob.add_u8(white.transpose(2, 0, 1))
        refs = {}
        for name, proc in procs.items():
            pv = proc(Image.fromarray(rgb), return_tensors="np")["pixel_values"][0]
            u8 = invert_normalise(pv, MEAN, STD, 1 / 255)
            r = pixel_value_record(pv)
            if name in FULL.get(fname, ()):
                r["u8"] = blob.add_u8(u8)
            refs[name] = r
        entry["refs"] = refs
        index["images"].append(entry)
        print(f"{fname:26s} {im.mode:5s} {im.width}x{im.height}  {len(data)} B")
    for cname, cfg, cls in CUSTOM:
        d = os.path.join(ROOT, cname)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "preprocessor_config.json"), "w") as fh:
            json.dump(cfg, fh, indent=2)
        proc = cls(**kwargs_from_config(cfg))
        cases = []
        for fname, data in images:
            rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            pv = proc(Image.fromarray(rgb), return_tensors="np")["pixel_values"][0]
            r = blob.add_f32(pv)
            r.update({"image": fname, "shape": list(pv.shape)})
            cases.append(r)
        index["custom"].append({"dir": cname, "cases": cases})
    with open(os.path.join(ROOT, "refs.bin"), "wb") as fh:
        fh.write(blob.data)
    with open(os.path.join(ROOT, "index.json"), "w") as fh:
        json.dump(index, fh, indent=1)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(ROOT) for f in fs)
    print(f"refs.bin {len(blob.data)} B; fixtures total {total} B")


if __name__ == "__main__":
    sys.exit(main())
