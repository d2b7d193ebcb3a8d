"""Training-free reference injection into a diffusers UNet (ReFIR-style), switchable per pipeline call.

While :class:`ReferenceAttention` is active, every UNet forward runs on a doubled batch: the degraded samples the
pipeline passed, then the reference latents noised to the same timestep (same text conditioning, same timestep).
In the decoder's self-attention layers (``attn1`` under ``up_blocks``) the degraded half attends to its own keys and
values *and* to the reference half's, layer by layer, so the reference's features at the same depth and noise level
can lend texture and colour where the degraded image has none (the "reference-only" idea used by ReFIR and the
diffusers community reference pipelines). The reference half runs ordinary self-attention and its output is dropped.

``weight`` blends the two attentions of the degraded half: ``(1 - w) * attn(self) + w * attn(self + reference)``,
so 0 is exactly the plain network and 1 is full concatenated attention. Leaving the context restores the original
processors and removes the hooks, also when the call raised.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

#: Module-name prefixes whose self-attention layers read the reference: the UNet's decoder.
DECODER_PREFIXES: tuple[str, ...] = ("up_blocks.",)


class _Batch:
    """How many leading batch items are the degraded samples, while a doubled forward is in flight."""

    n: int | None = None


class ReferenceAttnProcessor:
    """Self-attention whose first ``n`` batch items also attend to the K/V of the last ``n`` (their references).

    Mirrors diffusers' ``AttnProcessor2_0`` (spatial/group norm, 4-D inputs, residual, output rescale); outside a
    doubled forward, or for cross-attention, it defers to the layer's original processor.
    """

    def __init__(self, original: Any, weight: float, batch: _Batch) -> None:
        self.original, self.weight, self.batch = original, float(weight), batch

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        """Attention of ``attn`` over ``hidden_states``; see the class docstring."""
        n = self.batch.n
        if n is None or encoder_hidden_states is not None or hidden_states.shape[0] != 2 * n:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, seq, _ = hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, seq, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0)
        if self.weight > 0:
            # Keys/values of the degraded sample followed by its reference's, along the sequence axis.
            k_cat = torch.cat([key[:n], key[n:]], dim=2)
            v_cat = torch.cat([value[:n], value[n:]], dim=2)
            mask = None if attention_mask is None else torch.cat([attention_mask[:n], attention_mask[n:]], dim=-1)
            joint = F.scaled_dot_product_attention(query[:n], k_cat, v_cat, attn_mask=mask, dropout_p=0.0)
            out = torch.cat([(1.0 - self.weight) * out[:n] + self.weight * joint, out[n:]])

        hidden_states = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def encode_reference(pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
    """Clean latents of a reference: ``pixels`` float ``1x3xHxW`` in [0, 1] at the pipeline's working size.

    Uses the VAE posterior's mode (no sampling) and the VAE's scaling/shift, as the img2img pipeline does.
    """
    vae = pipe.vae
    x = (pixels * 2.0 - 1.0).to(device=vae.device, dtype=vae.dtype)
    with torch.no_grad():
        latents = vae.encode(x).latent_dist.mode()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def _double(x: Any, n: int) -> Any:
    if isinstance(x, torch.Tensor) and x.ndim >= 1 and x.shape[0] == n:
        return torch.cat([x, x])
    if isinstance(x, dict):
        return {k: _double(v, n) for k, v in x.items()}
    return x


class ReferenceAttention:
    """Context manager that injects ``ref_latents`` into ``unet``'s decoder self-attention for one pipeline call.

    Args:
        unet: a diffusers ``UNet2DConditionModel`` (or any model with ``Attention`` modules and a UNet signature).
        scheduler: the pipeline's scheduler; it noises the reference to each step's timestep.
        ref_latents: ``1xCxhxw`` clean reference latents at the same latent size as the sample
            (:func:`encode_reference`).
        weight: share of the reference-augmented attention in the degraded sample's output, in [0, 1].
        generator: draws the fixed noise that is scaled to each timestep for the reference.
        prefixes: module-name prefixes of the self-attention layers that read the reference.

    """

    def __init__(
        self,
        unet: torch.nn.Module,
        scheduler: Any,
        ref_latents: torch.Tensor,
        weight: float,
        generator: torch.Generator | None = None,
        prefixes: tuple[str, ...] = DECODER_PREFIXES,
    ) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"reference weight must be in [0, 1], got {weight!r}")
        self.unet, self.scheduler, self.weight, self.prefixes = unet, scheduler, float(weight), prefixes
        self.ref_latents = ref_latents
        noise = torch.randn(ref_latents.shape, generator=generator, dtype=torch.float32)
        self.noise = noise.to(device=ref_latents.device, dtype=ref_latents.dtype)
        self._batch = _Batch()
        self._originals: dict[str, Any] = {}
        self._hooks: list[Any] = []
        self._signature = inspect.signature(unet.forward)
        self.layers: list[str] = []  # names of the attention layers that read the reference

    def __enter__(self) -> ReferenceAttention:
        try:
            for name, module in self.unet.named_modules():
                if isinstance(module, Attention) and name.endswith("attn1") and name.startswith(self.prefixes):
                    self._originals[name] = module.processor
                    module.set_processor(ReferenceAttnProcessor(module.processor, self.weight, self._batch))
            if not self._originals:
                raise ValueError(f"no self-attention layers under {self.prefixes} in {type(self.unet).__name__}")
            self.layers = sorted(self._originals)
            self._hooks = [
                self.unet.register_forward_pre_hook(self._before, with_kwargs=True),
                self.unet.register_forward_hook(self._after, with_kwargs=True),
            ]
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        modules = dict(self.unet.named_modules())
        for name, processor in self._originals.items():
            modules[name].set_processor(processor)
        self._originals = {}
        self._batch.n = None

    def _before(self, module, args, kwargs):
        a = dict(self._signature.bind(*args, **kwargs).arguments)
        for name, param in self._signature.parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                a.update(a.pop(name, {}))
        sample, t = a["sample"], a["timestep"]
        n = sample.shape[0]
        step = torch.as_tensor(t).reshape(-1)[:1].to(self.ref_latents.device)
        ref = self.scheduler.add_noise(self.ref_latents, self.noise, step)
        ref = self.scheduler.scale_model_input(ref, t).to(device=sample.device, dtype=sample.dtype)
        ref = ref.expand(n, *ref.shape[1:])
        doubled = {k: (v if k == "sample" else _double(v, n)) for k, v in a.items()}
        doubled["sample"] = torch.cat([sample, ref])
        self._batch.n = n
        return (), doubled

    def _after(self, module, args, kwargs, output):
        n, self._batch.n = self._batch.n, None
        if n is None:
            return output
        if isinstance(output, tuple):
            return (output[0][:n], *output[1:])
        output.sample = output.sample[:n]
        return output
