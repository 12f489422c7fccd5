"""Checks a bundle before the app serves it, so a damaged file stops the start with its name.

The app loads its model lazily (the page is up while the weights load), which would otherwise turn a
truncated Parquet, token store or checkpoint into an error on the first request. :func:`check_bundle`
reads everything the recommender will need — the catalog, the default token store, the checkpoint's
manifest and tensor files — in a few seconds and without building the model.
"""

from __future__ import annotations

import os
from pathlib import Path

from talkplay.catalog import Catalog, CatalogError, load_catalog
from talkplay.checkpoint import CheckpointError, checkpoint_dir, verify_checkpoint
from talkplay.settings import SettingsError
from talkplay.token_store import TOKENS_DIR, load_default_store, variants

StartupError = (CatalogError, CheckpointError, SettingsError)  # each names the offending file or variable


def check_bundle(bundle: str | os.PathLike, require_model: bool = True) -> Catalog:
    """Validate ``bundle`` for serving; returns its catalog.

    Raises:
        CatalogError: tracks.parquet, the token store or its manifest is missing or malformed.
        CheckpointError: the checkpoint is missing (when ``require_model``), damaged, or was trained for
            another token store.
    """
    bundle = Path(bundle)
    catalog = load_catalog(bundle)
    if not variants(bundle):
        raise CatalogError(bundle / TOKENS_DIR, "no token store: the model cannot name these tracks. Give them the "
                           f"shipped model's codes with `python -m train.catalog.byo prepare --tracks … --out {bundle}`, "
                           "or make your own (README, \"Retrain for the best fit\")")
    store = load_default_store(bundle, catalog)
    try:
        checkpoint_dir(bundle)
    except CheckpointError as err:
        if require_model:
            raise CheckpointError(f"{err}: `python -m train.catalog.byo prepare` copies the shipped model into a new bundle; "
                                  "`python -m train.catalog.byo retrain` trains one (README, \"Bring your own catalog\")") from None
        return catalog
    verify_checkpoint(bundle, store)
    return catalog
