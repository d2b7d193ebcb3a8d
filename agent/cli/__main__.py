"""``python -m agent.cli``: the ``rnr`` command line (also under ``accelerate launch -m agent.cli``)."""

from agent.cli import main

main()
