"""Completion samples with their images in TensorBoard during GRPO: the input crop, the restored result, the text.

TRL logs completion tables only to wandb/trackio; with ``report_to: tensorboard`` a reviewer otherwise sees
reward curves but never what the policy wrote or what its plan did to the image. :class:`CompletionSamples` is a
``TrainerCallback`` that, every ``every`` logging steps, writes for the first ``max_samples`` completions of the
latest generation batch an image ``samples/<i>`` (input | restored side by side, restored grey where the
completion did not parse or the restoration failed) and a text ``samples/<i>`` (the completion and its rewards)
through the Trainer's own TensorBoard writer, so they sit in the same run as its scalars.

Images come from the restoring rewards of :mod:`rl.rewards` (``last_batch``: they already restored every
completion, so logging restores nothing again); texts and per-reward values from the trainer's completion log.
Imports torch (via ``transformers``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import TrainerCallback

from rl.rewards import completion_text


def _restoring(fn: Any) -> Any | None:
    """The :class:`rl.rewards._Restoring` reward inside ``fn`` (unwrapping :class:`rl.text_policy.TextReward`)."""
    inner = getattr(fn, "inner", fn)
    return inner if hasattr(inner, "last_batch") else None


def side_by_side(before: np.ndarray, after: np.ndarray | None, gap: int = 4) -> np.ndarray:
    """``uint8 HxWx3`` input and result side by side (white gap); a grey panel stands for a missing result.

    >>> side_by_side(np.zeros((2, 3, 3), np.uint8), None, gap=1).shape
    (2, 7, 3)
    """
    right = np.full_like(before, 128) if after is None or after.shape != before.shape else after
    spacer = np.full((before.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([before, spacer, right], axis=1)


class CompletionSamples(TrainerCallback):
    """Write completion samples (image pair and text) to TensorBoard on logging steps.

    Args:
        reward_funcs: the trainer's reward functions; the first restoring one supplies the images.
        every: write on every ``every``-th log event (1: each logging step).
        max_samples: completions written per event (the first ones of the latest generation batch); call
            :meth:`bind` with the trainer after constructing it (the completion log lives on the trainer).

    """

    def __init__(self, reward_funcs: list, every: int = 1, max_samples: int = 4) -> None:
        self.source = next((r for r in map(_restoring, reward_funcs) if r is not None), None)
        self.every, self.max_samples = max(1, int(every)), max(0, int(max_samples))
        self.trainer = None
        self._writer = None
        self._events = 0

    def bind(self, trainer) -> CompletionSamples:
        """Attach the trainer whose completion log (texts, per-reward values) is written; returns ``self``."""
        self.trainer = trainer
        return self

    def _texts(self, n: int) -> list[str]:
        logs = getattr(self.trainer, "_logs", None) or {}
        completions = list(logs.get("completion", []))[-n:] if n else []
        rewards = {k: list(v)[-n:] for k, v in (logs.get("rewards") or {}).items()}
        out = []
        for i in range(n):
            text = completion_text(completions[i]) if i < len(completions) else ""
            scores = ", ".join(
                f"{k} {'None' if not np.isfinite(v[i]) else f'{v[i]:.3f}'}" for k, v in rewards.items() if i < len(v)
            )
            out.append(f"**completion**\n\n    {text}\n\n**rewards**: {scores or 'n/a'}")
        return out

    def _tb_writer(self, args):
        """The Trainer's TensorBoard writer (same run and events file), else our own under ``output_dir/runs``."""
        from transformers.integrations import TensorBoardCallback

        handler = getattr(self.trainer, "callback_handler", None)
        for cb in getattr(handler, "callbacks", []):
            if isinstance(cb, TensorBoardCallback) and cb.tb_writer is not None:
                return cb.tb_writer
        if self._writer is None:
            import os

            from torch.utils.tensorboard import SummaryWriter

            log_dir = os.getenv("TENSORBOARD_LOGGING_DIR") or os.path.join(args.output_dir, "runs", "samples")
            self._writer = SummaryWriter(log_dir=log_dir)
        return self._writer

    def on_log(self, args, state, control, **kwargs):
        """Write the samples of the latest generation batch (main process, TensorBoard runs only)."""
        if not state.is_world_process_zero or "tensorboard" not in (args.report_to or []):
            return
        if "reward" not in (kwargs.get("logs") or {}):  # the end-of-training summary log has no new batch
            return
        self._events += 1
        if (self._events - 1) % self.every or not self.max_samples:
            return
        batch = self.source.last_batch if self.source is not None else []
        n = min(self.max_samples, len(batch)) if batch else min(self.max_samples, len(self._texts(self.max_samples)))
        if n == 0:
            return
        writer = self._tb_writer(args)
        texts = self._texts(len(batch))[:n] if batch else self._texts(n)
        for i in range(n):
            if batch:
                before, after, _ = batch[i]
                writer.add_image(f"samples/{i}", side_by_side(before, after), state.global_step, dataformats="HWC")
            writer.add_text(f"samples/{i}", texts[i], state.global_step)
        writer.flush()

    def on_train_end(self, args, state, control, **kwargs):
        """Close our own writer if one was needed (the Trainer closes its own)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
