"""Training data and training: degradation synthesis, ground truth, SFT and GRPO with restoration rewards.

Modules (nothing is imported here; heavy ones import torch/TRL themselves):

- ``rl.degradations``: the synthesis zoo, one module per kind, models registered in ``MODELS`` against
  :data:`reasoner.kinds.KINDS`; ``sample_ops``, ``apply``, ``factors``.
- ``rl.ground_truth``: records of synthesised degradations in the prediction schema; ``synthesize``.
- ``rl.photos`` / ``rl.cases``: bundled photos split by scene; the benchmarks' evaluation cases.
- ``rl.synth``: ``rnr synth`` sets (degraded crops, ground truth, target completions) and their SFT/GRPO views.
- ``rl.calibrate``: fits the ``measure`` backend's calibration on synthesised samples (``rnr calibrate``).
- ``rl.recipe``: typed SFT and GRPO recipes (YAML under ``rl/recipes/``, ``--set`` overrides).
- ``rl.training``: the steps SFT and GRPO share (device, model loading, trainer settings, saving, manifest).
- ``rl.sft`` / ``rl.grpo``: ``rnr train sft`` and ``rnr train grpo`` with TRL.
- ``rl.rewards`` / ``rl.reward_engine``: TRL reward functions; the engine that restores and re-scores their plans.
- ``rl.text_policy`` / ``rl.tiny_text``: the light text-only GRPO policy and its tiny test checkpoint.
- ``rl.tb_samples``: completion samples with images in TensorBoard during GRPO.
"""
