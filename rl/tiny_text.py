"""A tiny random-weight Qwen3 causal LM checkpoint, built offline and seeded: the light GRPO policy for tests.

It shares the tiny Qwen3-VL checkpoint's tokenizer (:func:`reasoner.tiny_vlm.build_tokenizer`: byte-level BPE learnt
on the prompts and the completion schema, Qwen special tokens, the Qwen chat template), so prompts tokenize the
same way; the model is a ``Qwen3ForCausalLM`` of a few layers, loadable with ``AutoModelForCausalLM``.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_text_policy(
    out_dir: str | Path, seed: int = 0, *, hidden: int = 64, layers: int = 2, heads: int = 4
) -> Path:
    """Write a tiny random-weight Qwen3 causal LM with its tokenizer to ``out_dir`` and return its path.

    Args:
        out_dir: Folder to write (created; files of the same names are overwritten).
        seed: Seed of the random weights.
        hidden: Hidden size (the MLP is twice as wide).
        layers: Decoder layers.
        heads: Attention heads (half as many key/value heads).

    Returns:
        ``out_dir`` as a Path.

    """
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM
    from transformers.utils import logging as hf_logging

    from reasoner.tiny_vlm import build_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        head_dim=hidden // heads,
        max_position_embeddings=4096,
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[eos, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(out)
    return out
