"""Images: nested lists of pixels, or base64 PNG/JPEG decoded, resized and normalised.

Value ranges: a nested list is taken in the model's own pixel range
(``0..max_value``, e.g. 0..16 for sklearn's digits); a decoded image is 0..255
and is rescaled to ``0..max_value`` first. Then ``(x * scale - mean) / std``
per channel, and the layout the model wants (NCHW, NHWC or flat).
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np

from ..errors import BadRequest
from ..manifest import ImagePreprocessing, TensorSpec
from ..protocols.dtypes import numpy_dtype
from . import instance_error

# a 6 MB PNG can claim gigapixels; refuse before decoding
MAX_PIXELS = 40_000_000


class ImagePreprocessor:
    def __init__(self, pre: ImagePreprocessing, spec: TensorSpec) -> None:
        self.pre = pre
        self.spec = spec
        self.dtype = numpy_dtype(spec.dtype)
        c = pre.channels
        self.mean = np.asarray(pre.mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(pre.std, dtype=np.float32).reshape(-1)
        if len(self.mean) not in (1, c) or len(self.std) not in (1, c):
            raise BadRequest(f"image preprocessing: mean/std need 1 or {c} values")

    def _decode(self, i: int, data: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        if data.startswith("data:") and "," in data:  # data URLs from browsers
            data = data.split(",", 1)[1]
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise instance_error(i, "not valid base64") from None
        try:
            img: Image.Image = Image.open(io.BytesIO(raw))
            if img.width * img.height > MAX_PIXELS:
                raise instance_error(i, f"image is {img.width}x{img.height}; the limit is {MAX_PIXELS} pixels")
            return self.image(img)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
            raise instance_error(i, f"not a readable PNG/JPEG image ({type(e).__name__})") from None

    def image(self, img: Any) -> np.ndarray:
        """A PIL image -> [height, width, channels] in the model's pixel range: converted, resized (and
        centre-cropped after a shortest-edge resize) as Hugging Face's image processors do."""
        from PIL import Image

        pre = self.pre
        resample = getattr(Image.Resampling, pre.resample.upper())
        img = img.convert("L" if pre.channels == 1 else "RGB")
        if pre.resize_shortest_edge is not None:
            short, long = sorted(img.size)
            edge = pre.resize_shortest_edge
            other = int(edge * long / short)
            size = (edge, other) if img.width <= img.height else (other, edge)
            if img.size != size:
                img = img.resize(size, resample)
            top, left = max(0, (img.height - pre.height) // 2), max(0, (img.width - pre.width) // 2)
            img = img.crop((left, top, left + pre.width, top + pre.height))
        elif img.size != (pre.width, pre.height):
            img = img.resize((pre.width, pre.height), resample)
        arr = np.asarray(img, dtype=np.float32) * (pre.max_value / 255.0)
        return arr.reshape(pre.height, pre.width, pre.channels)

    def _pixels(self, i: int, inst: Any) -> np.ndarray:
        h, w, c = self.pre.height, self.pre.width, self.pre.channels
        try:
            arr = np.asarray(inst, dtype=np.float32)
        except (ValueError, TypeError):
            raise instance_error(i, "expected nested lists of numbers or a base64 image") from None
        if arr.shape == (h, w) and c == 1:
            return arr.reshape(h, w, 1)
        if arr.shape == (h, w, c):
            return arr
        if arr.shape == (c, h, w):
            return arr.transpose(1, 2, 0)
        if arr.shape == (h * w * c,):
            return arr.reshape(h, w, c)
        raise instance_error(
            i,
            f"pixel array of shape {list(arr.shape)}; expected [{h}, {w}], [{h}, {w}, {c}], "
            f"[{c}, {h}, {w}] or {h * w * c} values",
        )

    def __call__(self, instances: list[Any]) -> dict[str, np.ndarray]:
        images = []
        for i, inst in enumerate(instances):
            if isinstance(inst, dict) and isinstance(inst.get("b64"), str):  # TF Serving's binary convention
                inst = inst["b64"]
            images.append(self._decode(i, inst) if isinstance(inst, str) else self._pixels(i, inst))
        return self.tensors(images)

    def tensors(self, images: list[np.ndarray]) -> dict[str, np.ndarray]:
        """[height, width, channels] pixel arrays -> the normalised input tensor."""
        batch = np.stack(images)  # N, H, W, C
        batch = (batch * self.pre.scale - self.mean) / self.std
        if self.pre.layout == "NCHW":
            batch = batch.transpose(0, 3, 1, 2)
        elif self.pre.layout == "flat":
            batch = batch.reshape(len(images), -1)
        return {self.spec.name: np.ascontiguousarray(batch, dtype=self.dtype)}
