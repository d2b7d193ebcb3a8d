"""Web presentation: the interactive page of ``rnr ui`` and the static HTML report of a batch run.

- :mod:`agent.ui.page`: the Gradio page (imports Gradio: the ``ui`` extra) and ``launch``.
- :mod:`agent.ui.runs`: its server side (backends, checkpoints, what each run may serve); no Gradio.
- :mod:`agent.ui.security`: the same-origin middleware; no Gradio.
- :mod:`agent.ui.render`: the page's HTML fragments and the editable diagnosis table; no Gradio.
- :mod:`agent.ui.report`: the batch report page (``report.html``), from :func:`agent.report.load_run`.

Nothing is imported here, so the report and the pure parts load without Gradio.
"""
