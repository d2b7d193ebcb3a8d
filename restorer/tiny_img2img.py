"""A tiny random-weight Stable-Diffusion-style img2img pipeline, built in-process from configs (no hub).

For tests and install smoke-tests of the ``diffusion`` restorer: a 2-block UNet, a 2-block VAE (latent grid = image
size / 2), a 2-layer CLIP text encoder with a locally built byte-level tokenizer, and a DDIM scheduler. Saved with
``save_pretrained`` so it loads through the same ``from_pretrained`` path as a real checkpoint; its images are
noise-like, its speed is what matters (a 64x64 call with a few steps takes well under a second on one CPU core).
"""

from __future__ import annotations

from pathlib import Path

try:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        f"the tiny img2img pipeline needs {e.name}; install with: pip install 'reason-restore[diffusion]'", name=e.name
    ) from e

#: Text length of the tiny encoder; prompts are truncated to it like CLIP's 77.
MAX_TOKENS = 77


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer over the 256 byte-level symbols (each also with CLIP's ``</w>`` end-of-word form), no merges.

    Every text tokenizes (one token per byte) and ids stay below 520, inside the tiny encoder's vocabulary.
    """
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in ByteLevel.alphabet():
        for tok in (ch, ch + "</w>"):
            vocab.setdefault(tok, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)


def build_tiny_img2img(out_dir: str | Path | None = None, seed: int = 0) -> StableDiffusionImg2ImgPipeline:
    """Build the tiny pipeline with weights drawn from ``seed``; save it to ``out_dir`` when given.

    Configs follow diffusers' own ``StableDiffusionImg2ImgPipeline`` tests (UNet blocks 32/64, cross-attention 32,
    VAE blocks 32/64 with 4 latent channels, CLIP hidden 32). The UNet's ``sample_size`` 32 times the VAE factor 2
    makes its native resolution 64 px.
    """
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        norm_num_groups=8,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=1000,
            max_position_embeddings=MAX_TOKENS,
            layer_norm_eps=1e-5,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionImg2ImgPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tiny_clip_tokenizer(),
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        pipe.save_pretrained(str(out_dir))
    return pipe
