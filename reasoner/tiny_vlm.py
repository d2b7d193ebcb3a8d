"""A tiny random-weight Qwen3-VL checkpoint, built offline and seeded, for tests and smoke runs.

The folder it writes has the layout of a real Qwen3-VL checkpoint (``config.json``, safetensors weights,
``generation_config.json``, a byte-level BPE ``tokenizer.json`` with the Qwen special tokens, a Qwen3-VL chat
template, and a ``processor_config.json`` holding the image processor and naming ``Qwen3VLProcessor``), so it loads
through the same ``from_pretrained`` calls users hit with ``Qwen/Qwen3-VL-2B-Instruct``. Only the sizes differ:
text hidden 64 in 2 layers, vision hidden 32 in 2 layers, a vocabulary of 1024 tokens trained on the prompts and
the completion schema so that the diagnose prompt is ~850 tokens. There is no video processor config: video
processors need torchvision, which these installs lack.

The weights are random (but for a bias towards short replies, see ``_short_reply_prior``), so the model writes
gibberish; grammar-guided decoding turns it into valid completions, which is what the tests exercise. The processor
caps images at 128x128 pixels (16 visual tokens), so a diagnosis costs well under a second on one CPU core.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

#: Qwen2/3 special tokens in the order of the real vocabulary (<|endoftext|> first), then the thinking tags.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
#: Not special (kept when decoding with ``skip_special_tokens``), single tokens as in the real Qwen3 vocabulary.
THINK_TOKENS = ("<think>", "</think>")
VOCAB_SIZE = 1024
#: Image processor pixel bounds: 32x32 (one merged token) to 128x128 (16 merged tokens).
MIN_PIXELS = 32 * 32
MAX_PIXELS = 128 * 128
#: Logit bonuses (see ``_short_reply_prior``) of tokens made of closing characters only: starting with a quote
#: (they close a string) or with a bracket (they close an array or object, but in a string they are text, hence
#: less than a quote); and of
#: ``</think>`` (less than a quote, so greedy thinking runs to its budget; sampled thinking mostly ends by itself).
QUOTE_LOGIT = 4.0
BRACKET_LOGIT = 2.0
THINK_CLOSE_LOGIT = 3.5

# The Qwen3-VL chat template (Instruct), trimmed of tool calling; the thinking variant opens ``<think>`` in the
# generation prompt, as Qwen3-VL-*-Thinking does, and renders past assistant turns with their reasoning.
_TEMPLATE = """\
{%- set image_count = namespace(value=0) -%}
{%- set video_count = namespace(value=0) -%}
{%- for message in messages -%}
{{- '<|im_start|>' + message.role + '\\n' -}}
{%- if message.content is string -%}
{{- message.content -}}
{%- else -%}
{%- for content in message.content -%}
{%- if content.type == 'image' or 'image' in content or 'image_url' in content -%}
{%- set image_count.value = image_count.value + 1 -%}
{%- if add_vision_id -%}{{- 'Picture ' ~ image_count.value ~ ': ' -}}{%- endif -%}
{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}
{%- elif content.type == 'video' or 'video' in content -%}
{%- set video_count.value = video_count.value + 1 -%}
{%- if add_vision_id -%}{{- 'Video ' ~ video_count.value ~ ': ' -}}{%- endif -%}
{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}
{%- elif 'text' in content -%}
{{- content.text -}}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{{- '<|im_end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\\n' -}}
{%- endif -%}
"""
_THINKING_GENERATION = "{{- '<|im_start|>assistant\\n<think>\\n' -}}"


def chat_template(thinking: bool = False) -> str:
    """The Jinja chat template of the tiny checkpoint; ``thinking`` opens ``<think>`` after the assistant header."""
    if not thinking:
        return _TEMPLATE
    return _TEMPLATE.replace("{{- '<|im_start|>assistant\\n' -}}", _THINKING_GENERATION)


def _corpus() -> list[str]:
    """Texts the BPE merges are learnt from: the prompts, chat markup and completions in the reply schema."""
    from prompts import TASKS, load_prompt
    from reasoner.schema import KINDS
    from reasoner.vlm_output import Completion, completion_json

    texts = []
    for task in TASKS:
        values = {"width": 640, "height": 480, "kinds": ", ".join(KINDS), "instruction": "Remove the noise."}
        try:
            texts.extend(load_prompt(task).render(**values))
        except ValueError:  # a template that needs values this corpus does not know: its raw text still helps
            p = load_prompt(task)
            texts.extend((p.system, p.user))
    texts.append("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n<think>\n\n")
    factors = {
        "haze": {"transmission": 0.61, "airlight": [0.9, 0.91, 0.93], "beta": 1.2},
        "rain": {"density": 0.2, "angle": 95.5},
        "motion_blur": {"length": 14.0, "angle": 30.0},
        "blur": {"sigma": 2.5, "kernel": "gaussian"},
        "low_resolution": {"scale": 3.0},
        "low_light": {"exposure": 0.25, "gamma": 1.4},
        "noise": {"sigma": 12.0, "model": "poisson_gaussian"},
        "jpeg": {"quality": 35},
    }
    for i, kind in enumerate(KINDS):
        present = {k: None for k in KINDS}
        present[kind] = {"severity": 0.42, "confidence": 0.9, "factors": factors[kind]}
        completion = Completion.model_validate(
            {
                "reasoning": [
                    {
                        "observation": f"The image shows signs of {kind.replace('_', ' ')} in flat regions.",
                        "inference": f"This points to {kind} with moderate severity.",
                        "kinds": [kind],
                    },
                    {"observation": "Edges are otherwise sharp.", "inference": "No other degradation.", "kinds": []},
                ],
                "degradations": present,
                "semantics": {
                    "description": "A street with buildings, trees and a clear sky.",
                    "objects": ["building", "tree", "sky", "car"][: 1 + i % 4],
                    "faces": i % 2 == 0,
                    "text": i % 3 == 0,
                    "sky": True,
                    "fine_texture": False,
                },
            }
        )
        texts.append("<think>\nLet me look at the image.\n</think>\n\n" + completion_json(completion))
    return texts


@functools.lru_cache(maxsize=1)
def _trained_bpe() -> tuple[str, str]:
    """(vocab JSON, merges JSON) of the byte-level BPE; learnt once per process, it does not depend on the seed."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(THINK_TOKENS),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus() * 3, trainer)
    model = json.loads(bpe.to_str())["model"]
    return json.dumps(model["vocab"]), json.dumps(model["merges"])


def build_tokenizer(thinking: bool = False):
    """A ``Qwen2Tokenizer``: byte-level BPE (Qwen2 pre-tokenizer) trained on :func:`_corpus`, Qwen special tokens."""
    from transformers import AddedToken, Qwen2Tokenizer

    vocab, merges = (json.loads(x) for x in _trained_bpe())
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
        model_max_length=32768,
        padding_side="left",
        chat_template=chat_template(thinking),
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    return tokenizer


def tiny_config(tokenizer) -> dict:
    """``Qwen3VLConfig`` keyword arguments for the tiny model; token ids taken from ``tokenizer``."""
    ids = tokenizer.convert_tokens_to_ids
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 8192,
        # mrope_section splits head_dim / 2 rotary frequencies over (time, height, width), as [24, 20, 20] of 64
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [4, 2, 2],
            "mrope_interleaved": True,
        },
        "bos_token_id": None,
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"),
        "tie_word_embeddings": False,
    }
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": 64,
        "num_position_embeddings": 64,  # an 8x8 grid, interpolated to the image's patch grid
        "deepstack_visual_indexes": [1],
    }
    return {
        "text_config": text,
        "vision_config": vision,
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
        "tie_word_embeddings": False,
    }


def build_tiny_reasoner(out_dir: str | Path, seed: int = 0, *, thinking: bool = False) -> Path:
    """Write a tiny random-weight Qwen3-VL checkpoint to ``out_dir`` and return its path.

    Fully offline and deterministic per ``seed`` (weights; the tokenizer does not depend on it). Loadable with
    ``AutoModelForImageTextToText.from_pretrained(out_dir)`` and, without torchvision, with
    :func:`reasoner.hf_processor.load_processor`.

    Args:
        out_dir: Folder to write (created; existing files of the same names are overwritten).
        seed: Seed of the random weights.
        thinking: Write a thinking-variant chat template (the generation prompt opens ``<think>``).

    Returns:
        ``out_dir`` as a Path.

    """
    import torch
    from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.utils import logging as hf_logging

    from reasoner.hf_processor import Qwen3VLImageOnlyProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(thinking)
    config = Qwen3VLConfig(**tiny_config(tokenizer))

    with torch.random.fork_rng(devices=[]):  # the CPU generator is always forked; no accelerator is touched
        torch.manual_seed(seed)
        model = Qwen3VLForConditionalGeneration(config).eval()
    _short_reply_prior(model, tokenizer)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a 1 MB checkpoint needs no "Writing model shards" bar on stderr
    try:
        model.save_pretrained(out)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()

    # The Qwen3-VL image processor settings (CLIP-style 0.5 mean/std, patch 16, merge 2) with a small pixel cap.
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        min_pixels=MIN_PIXELS,
        max_pixels=MAX_PIXELS,
    )
    processor = Qwen3VLImageOnlyProcessor(image_processor, tokenizer, chat_template=chat_template(thinking))
    processor.save_pretrained(out)
    _name_upstream_processor(out)
    return out


def _short_reply_prior(model, tokenizer) -> None:
    """Make the random model favour tokens that close a JSON string, array or object, and ``</think>``.

    A random model under a JSON grammar fills every string to its bound (300 characters) and needs ~1000 tokens
    per reply. Here one embedding channel is constant, so it survives the random layers as a constant component
    of the final normed hidden state, and the output head reads it as a bias on tokens made only of quotes and
    closing brackets, and on ``</think>``. Greedy replies become short (a few hundred tokens); sampled ones stay
    varied (strings of a few dozen tokens).
    """
    import torch

    text = model.model.language_model
    with torch.no_grad():
        text.embed_tokens.weight[:, 0] = 1.0
        ids = torch.tensor([list(range(len(tokenizer)))[:256]])
        level = float(text(input_ids=ids).last_hidden_state[0, :, 0].mean())
        head = model.lm_head.weight
        head[:, 0] = 0.0
        for i in range(len(tokenizer)):
            piece = tokenizer.decode([i])
            # only pure closers: a token like '"]},{"' closes a step but opens the next one
            if not piece or set(piece) - set('"]}'):
                continue
            head[i, 0] = (QUOTE_LOGIT if piece.startswith('"') else BRACKET_LOGIT) / level
        head[tokenizer.convert_tokens_to_ids("</think>"), 0] = THINK_CLOSE_LOGIT / level


def _name_upstream_processor(folder: Path) -> None:
    """Name ``Qwen3VLProcessor`` in the saved configs, as real checkpoints do, rather than the image-only class."""
    from reasoner.hf_processor import Qwen3VLImageOnlyProcessor

    ours = Qwen3VLImageOnlyProcessor.__name__
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        path = folder / name
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        if data.get("processor_class") == ours or name == "processor_config.json":
            data["processor_class"] = "Qwen3VLProcessor"
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
