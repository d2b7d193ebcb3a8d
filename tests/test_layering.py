"""The layering and the light entry points hold (import-linter checks the static graph in `make test`)."""

import subprocess
import sys

HEAVY = (
    "torch",
    "transformers",
    "diffusers",
    "vllm",
    "trl",
    "peft",
    "gradio",
    "ray",
    "xgrammar",
)


def test_package_entry_points_import_nothing_heavy():
    # `import reasoner` (and every package's __init__, and the CLI behind `rnr --help`) never imports a model stack:
    # heavy backends are imported only when chosen.
    code = (
        "import sys, agent, agent.cli, reasoner, restorer, retrieval, rl, prompts; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_import_linter_contracts_hold():
    # The same check `make test` runs: layers agent -> rl -> restorer | retrieval -> reasoner -> prompts.
    lint = [
        sys.executable,
        "-c",
        "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
    ]
    out = subprocess.run(lint, check=False, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
