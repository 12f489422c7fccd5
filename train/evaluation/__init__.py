"""Stage 5 — evaluation: how well the shipped checkpoint recommends and talks.

Ranking metrics on the test split against baselines (``evaluate``, ``metrics``, ``baselines``, the model as
ranked systems in ``model_eval``); does the played track fit typical first requests (``fit_check``); do the
replies tell the truth and do refinements move the right way (``conversation_checks``); and the README's
results block written from the reports (``results``). Next stage: :mod:`train.checks`.
"""
