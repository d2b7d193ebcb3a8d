"""An image-only Qwen3-VL processor, so Qwen3-VL checkpoints load on installs without torchvision.

Upstream's ``Qwen3VLProcessor`` declares a video processor, and video processors need torchvision. Without it,
``AutoProcessor.from_pretrained`` fails ("Can't load video processor") or silently returns only the tokenizer. The
subclass here has the same image processor and tokenizer and no video processor; all text and image handling is
upstream's. The image processor resolves to its PIL backend (``Qwen2VLImageProcessorPil``) when torchvision is
missing. Real checkpoints name ``Qwen3VLProcessor`` in ``processor_config.json``, so :func:`load_processor` picks
the class itself rather than trusting that name.
"""

from __future__ import annotations

try:
    from transformers import AutoProcessor, Qwen3VLConfig
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
    from transformers.utils import is_torchvision_available
except ImportError as e:  # pragma: no cover - exercised only on installs without the extra
    raise ImportError(
        f"Qwen3-VL processing needs {e.name}; install with: pip install 'reason-restore[vlm]'", name=e.name
    ) from e


class Qwen3VLImageOnlyProcessor(Qwen3VLProcessor):
    """``Qwen3VLProcessor`` without the video processor (images and text only; no torchvision needed)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


# Lets AutoProcessor resolve a checkpoint saved with this class, and Qwen3-VL configs that name no processor.
AutoProcessor.register(Qwen3VLConfig, Qwen3VLImageOnlyProcessor, exist_ok=True)


def load_processor(name_or_path: str, **kwargs):
    """The processor of a Qwen3-VL checkpoint (hub id or folder), image-only when torchvision is missing.

    With torchvision, upstream's ``AutoProcessor`` (videos included); without it, when the checkpoint has no video
    processor config (one built locally, or stripped to images), or when upstream's loader comes back without an
    image processor, :class:`Qwen3VLImageOnlyProcessor`. ``kwargs`` go to ``from_pretrained`` (``revision``,
    ``trust_remote_code``, ``min_pixels``/``max_pixels`` overrides, ...).
    """
    if is_torchvision_available():
        try:
            processor = AutoProcessor.from_pretrained(name_or_path, **kwargs)
        except OSError as e:
            if "video processor" not in str(e):
                raise
        else:
            if hasattr(processor, "image_processor") and hasattr(processor, "tokenizer"):
                return processor
    return Qwen3VLImageOnlyProcessor.from_pretrained(name_or_path, **kwargs)
