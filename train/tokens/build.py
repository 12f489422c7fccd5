"""Build a catalog's token stores: embeddings per modality → quantizer per modality → codes per track.

    python -m train.tokens.build --catalog catalog/demo                       # kmeans, rqvae and rkmeans stores
    python -m train.tokens.build --catalog catalog/demo --variants rkmeans --levels 3 --codebook-size 8

Each *variant* is one store under ``<bundle>/tokens/<variant>/`` (see ``talkplay.token_store``):

* ``kmeans``  — TalkPlay: one K-means code per modality (5 tokens per track);
* ``rqvae``   — 3MToken: an RQ-VAE per modality, L residual codes coarse to fine (5·L tokens);
* ``rkmeans`` — plain residual k-means, L levels (for catalogs too small for an RQ-VAE).

The generation order is the order of ``--modalities``. ``--reorder-from VARIANT`` writes an existing
store's codes, centroids and quantizers in a new order without refitting anything (same codes, same
meaning; only the order the model writes them in changes)::

    python -m train.tokens.build --catalog catalog/demo --reorder-from rkmeans --variants rkmeans_text \
        --modalities semantic metadata audio lyrics playlist

Item2vec sees only the *training* playlists of the bundle's split (playlists.parquet ``split`` column),
so the held-out playlists that the quality report uses as relevance never leak into the codes.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.tokens.build")

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from talkplay.catalog import Catalog, load_catalog
from talkplay.token_store import TokenStore, save_store, set_default_variant, store_dir, variants
from talkplay.tokens import DEFAULT_MODALITIES, DISAMBIGUATION, ModalitySpec, MusicVocab
from train.tokens.embeddings import CatalogEmbeddings, EmbeddingConfig, embed_catalog
from train.tokens.quantize import code_stats, default_codebook_size, load_quantizer, quantizer_for

NO_DATA_MODALITIES = ("lyrics",)  # modalities whose tracks may lack input → reserved code 0


@dataclass(frozen=True)
class TokenizerConfig:
    variant: str  # store name under tokens/
    quantizer: str  # "kmeans" | "rkmeans" | "rqvae"
    levels: int = 1  # residual levels (1 for kmeans)
    codebook_size: int | None = None  # codes per level; None → default_codebook_size(n_items, levels)
    codebook_sizes: tuple[tuple[str, int], ...] = ()  # per-modality overrides, e.g. (("audio", 32),)
    disambiguate: bool = False  # add a position that separates tracks sharing a full code tuple
    seed: int = 0  # quantizer initialization


VARIANTS = {
    "kmeans": TokenizerConfig("kmeans", "kmeans", 1),
    "rqvae": TokenizerConfig("rqvae", "rqvae", 2),
    "rkmeans": TokenizerConfig("rkmeans", "rkmeans", 2),
}


@dataclass
class BuiltStore:
    store: TokenStore
    centroids: dict[str, np.ndarray]
    quantizers: dict[str, np.ndarray]
    seconds: float


def _levels(cfg: TokenizerConfig) -> int:
    return 1 if cfg.quantizer == "kmeans" else cfg.levels


def _k_for(cfg: TokenizerConfig, modality: str, n_items: int) -> int:
    overrides = dict(cfg.codebook_sizes)
    k = overrides.get(modality) or cfg.codebook_size or default_codebook_size(n_items, _levels(cfg))
    return max(1, min(int(k), n_items))


def build_store(emb: CatalogEmbeddings, cfg: TokenizerConfig) -> BuiltStore:
    """Fit one quantizer per modality on ``emb`` and code every track."""
    t0 = time.time()
    n = len(emb.track_ids)
    specs: list[ModalitySpec] = []
    columns: list[np.ndarray] = []
    centroids: dict[str, np.ndarray] = {}
    states: dict[str, np.ndarray] = {}
    stats: dict[str, dict] = {}
    levels = _levels(cfg)
    for m, e in emb.modalities.items():
        reserved = 1 if m in NO_DATA_MODALITIES else 0
        rows = np.flatnonzero(e.has_data)
        codes = np.zeros((n, levels), dtype=np.int64)  # no-data rows keep the reserved code 0 at every level
        if len(rows) >= 2:
            k = _k_for(cfg, m, len(rows))
            q = quantizer_for(cfg.quantizer, levels=levels, codebook_size=k, reserved=reserved)
            q.fit(e.vectors[rows], seed=cfg.seed)
            codes[rows] = q.encode(e.vectors[rows])
            for level, book in enumerate(q.codebooks(), 1):
                centroids[_label(m, level, levels)] = np.asarray(book, dtype=np.float32)
            states.update({f"{m}.{key}": value for key, value in q.state_dict().items()})
            size = reserved + k
        else:
            # Nothing to learn (e.g. an all-instrumental catalog's lyrics): only the reserved code exists.
            k, size = 0, max(1, reserved)
        specs.append(ModalitySpec(m, levels, size, reserved))
        columns.append(codes)
        stats[m] = {"codebook_size": k, "reserved": reserved, "tracks_with_data": int(len(rows)),
                    **asdict(code_stats(codes[rows], max(k, 1), reserved=reserved))}
    all_codes = np.hstack(columns)
    # Collisions are measured before any disambiguation: they say how well the modalities separate tracks.
    full = code_stats(all_codes, max(s.codebook_size for s in specs))
    dis_size = 0
    if cfg.disambiguate:
        dis = _disambiguation_codes(all_codes)
        dis_size = int(dis.max()) + 1
        specs.append(ModalitySpec(DISAMBIGUATION, 1, dis_size, 0))
        all_codes = np.hstack([all_codes, dis[:, None]])
    vocab = MusicVocab(specs)
    if emb.fallback_map is not None:
        states.update({f"playlist_fallback.{k}": v for k, v in emb.fallback_map.state().items()})
    manifest = {
        "variant": cfg.variant,
        "tokenizer": asdict(cfg),
        "embeddings": {"config": asdict(emb.config), "sources": emb.sources(), "audio_state": emb.audio_state},
        "stats": {"modalities": stats, "collision_rate": full.collision_rate, "unique_tuples": full.unique_tuples,
                  "disambiguation_codes": dis_size,
                  "cold_start_fallback_tracks": int(emb.modalities["playlist"].fallback.sum())
                  if "playlist" in emb.modalities and emb.modalities["playlist"].fallback is not None else 0},
        "versions": _versions(),
    }
    store = TokenStore(vocab, list(emb.track_ids), all_codes, manifest)
    return BuiltStore(store, centroids, states, time.time() - t0)


def _label(modality: str, level: int, levels: int) -> str:
    return modality if levels == 1 else f"{modality}{level}"


def _disambiguation_codes(codes: np.ndarray) -> np.ndarray:
    """0 for the first track of each distinct tuple, 1 for the second, … (row order)."""
    seen: dict[tuple, int] = {}
    out = np.zeros(len(codes), dtype=np.int64)
    for i, row in enumerate(map(tuple, codes)):
        out[i] = seen.get(row, 0)
        seen[row] = out[i] + 1
    return out


def encode_new(store_root: Path, emb: CatalogEmbeddings) -> np.ndarray:
    """Codes for new tracks with a saved store's quantizers — no refitting (cold start)."""
    from safetensors.numpy import load_file

    from talkplay.token_store import QUANTIZERS_FILE, load_store

    store = load_store(store_root)
    states = load_file(str(store_root / QUANTIZERS_FILE))
    cfg = TokenizerConfig(**{k: (tuple(map(tuple, v)) if k == "codebook_sizes" else v)
                             for k, v in store.manifest["tokenizer"].items()})
    levels = _levels(cfg)
    columns = []
    for spec in store.vocab.modalities:
        if spec.name == DISAMBIGUATION:
            continue
        e = emb.modalities[spec.name]
        codes = np.zeros((len(emb.track_ids), levels), dtype=np.int64)
        prefix = f"{spec.name}."
        state = {k[len(prefix):]: v for k, v in states.items() if k.startswith(prefix)}
        rows = np.flatnonzero(e.has_data)
        if state and len(rows):
            codes[rows] = load_quantizer(cfg.quantizer, state).encode(e.vectors[rows])
        columns.append(codes)
    codes = np.hstack(columns)
    if cfg.disambiguate:
        existing = {tuple(r[:-1]): int(r[-1]) for r in store.codes}
        dis = []
        for row in map(tuple, codes):
            nxt = existing.get(row, -1) + 1
            existing[row] = nxt
            dis.append(nxt)
        codes = np.hstack([codes, np.array(dis)[:, None]])
    return codes


def _versions() -> dict:
    import sentence_transformers
    import torch

    import talkplay

    return {"talkplay": talkplay.__version__, "torch": torch.__version__,
            "sentence_transformers": sentence_transformers.__version__}


def train_playlists(bundle: Path) -> list[tuple[str, ...]]:
    """Track sequences of the bundle's training playlists ([] when it has none)."""
    from talkplay.bundle import read_playlists

    if not (bundle / "playlists.parquet").exists():
        return []
    return [p.track_ids for p in read_playlists(bundle) if p.split in ("train", None, "")]


def tokenize_catalog(bundle: str | Path, variant_names: list[str], cache_dir: Path | None = None,
                     config: EmbeddingConfig = EmbeddingConfig(), overrides: dict | None = None,
                     default: str | None = None, text_embedder=None, log=print) -> dict[str, BuiltStore]:
    """Embed the catalog once, build and save every requested variant, and set the default store.

    Args:
        text_embedder: optional callable texts → vectors with an ``id`` (tests pass a tiny one).
    """
    bundle = Path(bundle)
    catalog: Catalog = load_catalog(bundle)
    playlists = train_playlists(bundle) if "playlist" in config.modalities else []
    t0 = time.time()
    emb = embed_catalog(catalog, playlists, config, cache_dir, text_embedder=text_embedder)
    log(f"embedded {len(catalog)} tracks in {len(emb.modalities)} modalities ({time.time() - t0:.1f} s; "
        f"{len(playlists)} training playlists)")
    built = {}
    for name in variant_names:
        cfg = replace(VARIANTS[name], **(overrides or {})) if name in VARIANTS else \
            TokenizerConfig(name, **(overrides or {}))
        result = build_store(emb, cfg)
        save_store(result.store, store_dir(bundle, name), result.centroids, result.quantizers)
        stats = result.store.manifest["stats"]
        log(f"[{name}] {result.store.vocab} — collision rate {stats['collision_rate']:.3f} ({result.seconds:.1f} s)")
        built[name] = result
    if default:
        set_default_variant(bundle, default)
    elif len(variants(bundle)) == 1:
        set_default_variant(bundle, variant_names[0])
    return built


TEXT_FIRST_ORDER = ("semantic", "metadata", "audio", "lyrics", "playlist")  # what a request's words say most about first


def reorder_store(bundle: str | Path, source: str, target: str, order: list[str] | tuple[str, ...]) -> TokenStore:
    """Copy store ``source`` as ``target`` with its modalities in ``order`` (disambiguation stays last).

    Codes, centroids (keyed by position label) and quantizer states (keyed by modality) are unchanged,
    so tracks keep their codes and cold start (:func:`encode_new`) works as before.
    """
    import shutil

    from talkplay.token_store import CENTROIDS_FILE, QUANTIZERS_FILE, load_store

    src = load_store(store_dir(bundle, source))
    names = [m.name for m in src.vocab.modalities if m.name != DISAMBIGUATION]
    if sorted(order) != sorted(names):
        raise ValueError(f"--modalities {list(order)} must be a permutation of store {source!r}'s {names}")
    specs = {m.name: m for m in src.vocab.modalities}
    new_specs = [specs[n] for n in order] + ([specs[DISAMBIGUATION]] if DISAMBIGUATION in specs else [])
    vocab = MusicVocab(new_specs)
    columns = [src.vocab.positions.index(p) for p in vocab.positions]
    manifest = {k: v for k, v in src.manifest.items() if k not in ("vocab", "tracks")}
    manifest["variant"] = target
    manifest["reordered_from"] = source
    manifest["tokenizer"] = {**manifest.get("tokenizer", {}), "variant": target}
    store = TokenStore(vocab, list(src.track_ids), src.codes[:, columns], manifest)
    out = save_store(store, store_dir(bundle, target))
    for name in (CENTROIDS_FILE, QUANTIZERS_FILE):
        if (src.root / name).exists():
            shutil.copyfile(src.root / name, out / name)
    return load_store(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.tokens.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle directory")
    parser.add_argument("--variants", nargs="+", default=["kmeans", "rqvae", "rkmeans"],
                        help="stores to build: kmeans, rqvae, rkmeans (default: all three)")
    parser.add_argument("--default", default=None, help="variant the runtime uses (written to tokens/store.json)")
    parser.add_argument("--modalities", nargs="+", default=list(DEFAULT_MODALITIES),
                        help="modalities in generation order (default: playlist semantic metadata lyrics audio)")
    parser.add_argument("--text-model", default=EmbeddingConfig.text_model,
                        help="sentence-transformers model: the offline default, a local path or a hub id")
    parser.add_argument("--levels", type=int, default=None, help="residual levels for rqvae/rkmeans (default 2)")
    parser.add_argument("--codebook-size", type=int, default=None,
                        help="codes per level (default: derived from the catalog size)")
    parser.add_argument("--disambiguate", action=argparse.BooleanOptionalAction, default=True,
                        help="add a <|dis-i|> position so every code tuple names exactly one track (default: on; "
                             "the inference engine needs tuples to resolve to one track)")
    parser.add_argument("--seed", type=int, default=0, help="seed for item2vec and the quantizers")
    parser.add_argument("--reorder-from", default=None, metavar="VARIANT",
                        help="copy this existing store in the --modalities order as the (single) --variants name, "
                             "without refitting")
    parser.add_argument("--cache", type=Path, default=None,
                        help="embedding cache (default: $TALKPLAY_CACHE/embeddings or ~/.cache/talkplay/embeddings)")
    args = parser.parse_args(argv)
    from talkplay.previews import default_cache_dir

    if args.reorder_from:
        if len(args.variants) != 1:
            parser.error("--reorder-from writes one store: give exactly one --variants name")
        store = reorder_store(args.catalog, args.reorder_from, args.variants[0], args.modalities)
        if args.default:
            set_default_variant(args.catalog, args.default)
        print(json.dumps({args.variants[0]: {"tracks": len(store), "positions": [p.label for p in store.vocab.positions],
                                             "reordered_from": args.reorder_from}}, indent=2))
        return 0

    overrides = {k: v for k, v in (("levels", args.levels), ("codebook_size", args.codebook_size)) if v is not None}
    overrides["disambiguate"] = args.disambiguate
    overrides["seed"] = args.seed
    config = EmbeddingConfig(modalities=tuple(args.modalities), text_model=args.text_model, seed=args.seed)
    t0 = time.time()
    built = tokenize_catalog(args.catalog, args.variants, args.cache or default_cache_dir() / "embeddings", config,
                             overrides, args.default)
    print(json.dumps({name: {"tracks": len(b.store), "positions": len(b.store.vocab),
                             "collision_rate": round(b.store.manifest["stats"]["collision_rate"], 4)}
                      for name, b in built.items()} | {"seconds": round(time.time() - t0, 1)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
