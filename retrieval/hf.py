"""DINOv2 / CLIP / SigLIP image embeddings through transformers, for libraries that need semantic matching.

torch and transformers are imported when an :class:`HFEmbedder` is built, never at module import, so that
``retrieval`` stays light; without them the constructor raises an ImportError naming the extra to install.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from reasoner.common import torch_dtype
from reasoner.imageio import to_uint8

EXTRA_HINT = "install with: pip install 'reason-restore[vlm]'"
#: ``config.model_type`` values embedded with the CLS token / mean of patch tokens of the last hidden state.
DINO_TYPES = frozenset({"dinov2", "dinov2_with_registers", "dinov3_vit"})
#: Rough cosine below which a match is weak, per kind; image-image cosines of CLIP-like models run high.
DEFAULT_THRESHOLDS = {"dinov2": 0.5, "clip": 0.8, "siglip": 0.75, "generic": 0.5}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_FINGERPRINT_BYTES = 1 << 20


def _import_torch() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as e:
        raise ImportError(f"HFEmbedder needs torch and transformers ({e.name} is missing); {EXTRA_HINT}") from e
    return torch, transformers


def _fingerprint(folder: Path) -> str:
    """Short content hash of a local checkpoint: config files in full, weights by size and first/last MiB."""
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        if p.suffix == ".json":
            h.update(p.name.encode() + b"\0" + p.read_bytes())
        elif p.suffix in _WEIGHT_SUFFIXES:
            size = p.stat().st_size
            with p.open("rb") as f:
                head = f.read(_FINGERPRINT_BYTES)
                f.seek(max(0, size - _FINGERPRINT_BYTES))
                tail = f.read(_FINGERPRINT_BYTES)
            h.update(p.name.encode() + b"\0" + str(size).encode() + head + tail)
    return h.hexdigest()[:16]


class HFEmbedder:
    """Image embeddings from a transformers vision model, L2-normalised.

    Args:
        model: A Hugging Face model id or a local folder holding the model and its image processor config.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, or ``"auto"`` (CUDA when available).
        dtype: ``None`` (float32), a torch dtype, or a name for :func:`reasoner.common.torch_dtype` (``"float32"``,
            ``"bfloat16"``, ``"float16"``, their short forms, or ``"auto"``: bfloat16 on an accelerator).
        revision: Branch, tag or commit of a hub model.
        kind: ``"dinov2"`` (CLS token, or ``pooling="mean"`` over patch tokens), ``"clip"`` / ``"siglip"``
            (``get_image_features``), ``"generic"`` (pooler output, else mean of the last hidden state), or
            ``"auto"`` (from ``config.model_type``).
        pooling: For DINOv2: ``"cls"`` (default) or ``"mean"``.
        batch_size: Images per forward pass.

    Attributes:
        name: ``"hf:<model>"`` (local folders as absolute paths), what a library records and reloads.
        version: The model id or folder name plus ``@`` the hub commit hash (or ``revision``), or for a local
            folder ``@local-`` plus a content fingerprint of its config and weights; ``pooling`` is appended
            when not the default.
        dim: Embedding size, measured once on a blank image.
        default_threshold: From :data:`DEFAULT_THRESHOLDS` for the kind (a rough guide; tune per library).

    Raises:
        ImportError: When torch or transformers is not installed, naming the extra.
        ValueError: For an unknown kind, pooling or dtype.

    """

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        dtype: Any = None,
        revision: str | None = None,
        kind: Literal["auto", "dinov2", "clip", "siglip", "generic"] = "auto",
        pooling: Literal["cls", "mean"] = "cls",
        batch_size: int = 16,
    ) -> None:
        torch, transformers = _import_torch()
        if kind not in ("auto", "dinov2", "clip", "siglip", "generic"):
            raise ValueError(f"unknown kind {kind!r}; choose auto, dinov2, clip, siglip or generic")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"unknown pooling {pooling!r}; choose cls or mean")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype is not None:
            dtype = torch_dtype(dtype, device)
        local = Path(model).expanduser()
        source = str(local.resolve()) if local.is_dir() else model
        self._torch = torch
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.batch_size = max(1, int(batch_size))
        # Never trust_remote_code: the model name may come from a library's library.json, and remote code would run
        # whatever that checkpoint ships. Architectures transformers knows need none.
        self.processor = transformers.AutoImageProcessor.from_pretrained(
            source, revision=revision, trust_remote_code=False
        )
        self.model = transformers.AutoModel.from_pretrained(
            source, revision=revision, dtype=self.dtype, trust_remote_code=False
        )
        self.model.to(self.device).eval()
        model_type = str(getattr(self.model.config, "model_type", ""))
        if kind == "auto":
            if model_type in DINO_TYPES:
                kind = "dinov2"
            elif model_type.startswith("siglip"):
                kind = "siglip"
            elif hasattr(self.model, "get_image_features"):
                kind = "clip"
            else:
                kind = "generic"
        self.kind, self.pooling = kind, pooling
        self.name = f"hf:{source}"
        if local.is_dir():
            tag = f"{local.resolve().name}@local-{_fingerprint(local.resolve())}"
        else:
            commit = getattr(self.model.config, "_commit_hash", None) or revision
            tag = f"{model}@{commit}" if commit else model
        self.version = tag if pooling == "cls" or kind != "dinov2" else f"{tag}+{pooling}"
        self.default_threshold = DEFAULT_THRESHOLDS[kind]
        self.dim = int(self.embed([np.zeros((32, 32, 3), np.float32)]).shape[1])

    def __repr__(self) -> str:
        return f"HFEmbedder({self.name!r}, kind={self.kind!r}, device={str(self.device)!r}, dim={self.dim})"

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed ``float32 HxWx3 RGB in [0, 1]`` images (uint8 accepted); returns ``float32 (n, dim)``, unit rows.

        Raises:
            ValueError: For an image that is not HxWx3.

        """
        torch = self._torch
        arrays = []
        for img in images:
            a = np.asarray(img)
            if a.ndim != 3 or a.shape[2] != 3 or a.size == 0:
                raise ValueError(f"expected an HxWx3 RGB image, got an array of shape {a.shape}")
            arrays.append(to_uint8(a))
        out = []
        with torch.inference_mode():
            for start in range(0, len(arrays), self.batch_size):
                inputs = self.processor(images=arrays[start : start + self.batch_size], return_tensors="pt")
                inputs = {
                    k: v.to(self.device, self.dtype if v.is_floating_point() else None) if hasattr(v, "to") else v
                    for k, v in inputs.items()
                }
                feats = self._forward(inputs).float()
                out.append(torch.nn.functional.normalize(feats, dim=-1).cpu().numpy())
        if not out:
            return np.zeros((0, getattr(self, "dim", 0)), np.float32)
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    def _forward(self, inputs: dict[str, Any]) -> Any:
        if self.kind in ("clip", "siglip"):
            feats = self.model.get_image_features(**inputs)
            # transformers 5 returns a ModelOutput whose pooler_output is the (projected) embedding; 4.x a tensor.
            return feats if isinstance(feats, self._torch.Tensor) else feats.pooler_output
        outputs = self.model(pixel_values=inputs["pixel_values"])
        hidden = outputs.last_hidden_state
        if self.kind == "dinov2":
            if self.pooling == "cls":
                return hidden[:, 0]
            skip = 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)
            return hidden[:, skip:].mean(dim=1)
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is not None and pooled.ndim == 2:
            return pooled
        return hidden.mean(dim=1) if hidden.ndim == 3 else hidden.flatten(1)
