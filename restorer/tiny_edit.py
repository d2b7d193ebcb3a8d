"""A tiny random-weight Qwen-Image-Edit pipeline, built offline and seeded, for tests and install smoke runs.

The folder it writes has the layout of ``Qwen/Qwen-Image-Edit-2509`` (``model_index.json`` naming
``QwenImageEditPlusPipeline``; ``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``processor/`` and
``scheduler/`` subfolders), so it loads through the same ``from_pretrained`` call users hit with the real model.
Only the sizes differ: an MMDiT of 2 layers (3 heads of 16), a VAE with 4 latent channels and a 4x spatial factor
(images snap to multiples of 8 instead of 16), a Qwen2.5-VL text encoder of hidden 32 in 2 layers, and the byte-level
BPE tokenizer of :mod:`reasoner.tiny_vlm`. The processor is saved as upstream's ``Qwen2VLProcessor`` (what
``model_index.json`` names in real checkpoints): diffusers records the *class* of the processor it was given, and a
custom class there cannot be resolved when the folder is loaded later. The weights are random, so the output is
garbage; the pipeline exercises the real ``__call__`` path in well under a second at 64 px on one CPU core.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Image processor bounds of the tiny text encoder's vision tower (patch 14, merge 2): one to 16 merged tokens.
MIN_PIXELS = 28 * 28
MAX_PIXELS = 112 * 112
TEXT_HIDDEN = 32


def build_components(seed: int = 0) -> dict:
    """The tiny pipeline's components, by the pipelines' argument names.

    ``transformer``, ``vae``, ``scheduler``, ``text_encoder``, ``tokenizer`` and ``processor``.
    Deterministic per ``seed``; built in-process from configs, nothing is downloaded.
    """
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from reasoner.tiny_vlm import build_tokenizer
    from restorer.qwen_edit import ImageOnlyQwen2VLProcessor

    tokenizer = build_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # rope axes (8, 4, 4) split the head dim 16 over (frame, height, width), as (16, 56, 56) of 128 upstream
        transformer = QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=16,
            out_channels=4,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=3,
            joint_attention_dim=TEXT_HIDDEN,
            guidance_embeds=False,
            axes_dims_rope=(8, 4, 4),
        )
        vae = AutoencoderKLQwenImage(
            base_dim=24,
            z_dim=4,
            dim_mult=[1, 2, 4],
            num_res_blocks=1,
            temperal_downsample=[False, True],
            latents_mean=[0.0] * 4,
            latents_std=[1.0] * 4,
        )
        config = Qwen2_5_VLConfig(
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": TEXT_HIDDEN,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "max_position_embeddings": 8192,
                # head_dim 16: mrope_section splits its 8 rotary frequencies over (time, height, width)
                "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
                "bos_token_id": None,
                "eos_token_id": ids("<|im_end|>"),
                "pad_token_id": ids("<|endoftext|>"),
            },
            vision_config={
                "depth": 2,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 2,
                "out_hidden_size": TEXT_HIDDEN,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "window_size": 56,
                "fullatt_block_indexes": [1],
            },
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
        )
        text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=14, temporal_patch_size=2, merge_size=2, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS
    )
    return {
        "transformer": transformer.eval(),
        "vae": vae.eval(),
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "processor": ImageOnlyQwen2VLProcessor(image_processor, tokenizer),
    }


def build_tiny_pipeline(seed: int = 0, *, plus: bool = True):
    """A tiny ``QwenImageEditPlusPipeline`` (``plus``) or ``QwenImageEditPipeline`` in memory, on CPU, float32."""
    from restorer.qwen_edit import fit_template_start, pipeline_class

    pipe = pipeline_class(plus)(**build_components(seed))
    fit_template_start(pipe)
    return pipe


def build_tiny_restorer(out_dir: str | Path, seed: int = 0, *, plus: bool = True) -> Path:
    """Write a tiny random-weight Qwen-Image-Edit(-Plus) pipeline folder to ``out_dir`` and return its path.

    Loadable with ``QwenImageEditPlusPipeline.from_pretrained(out_dir)`` where torchvision is installed, and
    everywhere with :func:`restorer.qwen_edit.load_pipeline` or ``QwenEditRestorer(model=out_dir)``, which supply
    an image-only processor when torchvision is missing (as they must for the real checkpoints too).

    Args:
        out_dir: Folder to write (created; files of the same names are overwritten).
        seed: Seed of the random weights.
        plus: Write the multi-image ``QwenImageEditPlusPipeline`` (as Qwen-Image-Edit-2509) rather than the
            single-image ``QwenImageEditPipeline`` (as Qwen-Image-Edit).

    Returns:
        ``out_dir`` as a Path.

    """
    from transformers.utils import logging as hf_logging

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipe = build_tiny_pipeline(seed, plus=plus)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a few-MB folder needs no "Writing model shards" bar on stderr
    try:
        pipe.save_pretrained(out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    _name_upstream_processor(out)
    return out


def _name_upstream_processor(folder: Path) -> None:
    """Name ``Qwen2VLProcessor`` (as real checkpoints do) wherever the image-only class was recorded."""
    index = folder / "model_index.json"
    data = json.loads(index.read_text())
    data["processor"] = ["transformers", "Qwen2VLProcessor"]
    index.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    for path in (folder / "processor").glob("*.json"):
        cfg = json.loads(path.read_text())
        if isinstance(cfg, dict) and "processor_class" in cfg:
            cfg["processor_class"] = "Qwen2VLProcessor"
            path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    tok = folder / "tokenizer" / "tokenizer_config.json"
    if tok.exists():
        cfg = json.loads(tok.read_text())
        if cfg.get("processor_class"):
            cfg["processor_class"] = "Qwen2VLProcessor"
            tok.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
