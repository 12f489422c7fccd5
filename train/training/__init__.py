"""Stage 4 — training: the language model with its vocabulary expanded by the music tokens, fine-tuned.

Examples rendered, mixed and batched (``dataset``), the losses (``losses``: next token on supervised positions,
the self-similarity term), the run itself with resume (``sft``: ``python -m train.training.sft``), its curves
(``training_report``), the same recipe as one short GPU run (``gpu_run``), and a bring-your-own catalog's
retrain in one command (``retrain``). Next stage: :mod:`train.evaluation`.
"""
