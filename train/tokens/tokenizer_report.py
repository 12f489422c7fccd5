"""Tokenizer quality report: content-based retrieval by token matching (3MToken, Table 1) and code stats.

    python -m train.tokens.tokenizer_report --catalog catalog/demo     # → reports/tokenizer_demo.{md,json,png}

Protocol. Every track of a held-out playlist is a seed; the other tracks of that playlist are relevant.
All other catalog tracks are ranked by how many tokens they share with the seed:

* flat codes: one point per modality whose code equals the seed's;
* residual codes: hierarchical matching — level l counts only if levels 1..l-1 matched too (3MToken);
* multimodal: the sum over modalities.

Two relevance definitions: *co-membership* (every other track of the held-out playlist — the 3MToken
setup; with ~16-track playlists in a 286-track catalog it saturates, random Hit@10 ≈ 0.48) and
*neighbours* (the tracks right before and after the seed in the playlist — far more discriminative).
Token scores tie a lot; Hit@k and MRR are *expected* values under a uniformly random order within ties,
computed exactly, so no tie-break favours any system. For reference the same seeds are ranked by cosine similarity
of the unquantized embeddings and at random. The default variant is chosen on the valid playlists; the
tables report the test playlists (which include the cold-start tracks).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.tokens.tokenizer_report")

import argparse
import json
import sys
import time
from math import comb
from pathlib import Path

import numpy as np

from talkplay.catalog import load_catalog
from talkplay.matching import level_matches
from talkplay.token_store import TokenStore, load_store, set_default_variant, store_dir, variants

KS = (5, 10, 20)
REPO = Path(__file__).resolve().parents[2]


def expected_hit(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Probability that a top-k list holds a relevant item, ties broken uniformly at random.

    Args:
        scores: (n,) higher is better (the seed itself already removed).
        relevant: (n,) bool.
    """
    if not relevant.any():
        return 0.0
    best_rel = scores[relevant].max()
    above = int((scores > best_rel).sum())
    if above >= k:
        return 0.0
    tie = scores == best_rel
    g, r = int(tie.sum()), int((tie & relevant).sum())
    slots = k - above
    if slots >= g:
        return 1.0
    return 1.0 - comb(g - r, slots) / comb(g, slots)


def modality_scores(store: TokenStore, modality: str, seed_row: int) -> np.ndarray:
    """Match score of every track against the seed for one modality: the levels they share, coarse to fine, by
    the engine's own rule (:func:`talkplay.matching.level_matches`: a reserved "no data" code is no evidence)."""
    cols = store.vocab.positions_of(modality)
    shared = level_matches(store.codes, store.codes[seed_row], cols, store.vocab.spec(modality).reserved, True)
    return shared.sum(axis=1).astype(np.float64)


def expected_reciprocal_rank(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Expected 1/rank of the first relevant item under random tie-breaking (0 if none is relevant)."""
    if not relevant.any():
        return 0.0
    best_rel = scores[relevant].max()
    above = int((scores > best_rel).sum())
    tie = scores == best_rel
    g, r = int(tie.sum()), int((tie & relevant).sum())
    # P(first relevant of the tie group sits at offset j) for j = 0..g-r
    total, p_none_before = 0.0, 1.0
    for j in range(g - r + 1):
        p_here = p_none_before * r / (g - j)
        total += p_here / (above + j + 1)
        p_none_before *= (g - j - r) / (g - j)
    return total


def seeds_from(playlists, index: dict[str, int], window: int | None = None) -> list[tuple[int, np.ndarray]]:
    """(seed row, relevant rows) for every track of every playlist.

    Args:
        window: None → every other track of the playlist is relevant (co-membership); w → only the
            tracks at most w positions away.
    """
    out = []
    for p in playlists:
        rows = [index[t] for t in p if t in index]
        for i, s in enumerate(rows):
            lo, hi = (0, len(rows)) if window is None else (max(0, i - window), min(len(rows), i + window + 1))
            rel = np.array(rows[lo:i] + rows[i + 1:hi], dtype=np.int64)
            if len(rel):
                out.append((s, rel))
    return out


def hit_table(score_fn, n: int, seeds) -> dict:
    """Mean expected Hit@k (keys = k) and MRR (key "mrr") over seeds for a scoring function row → scores."""
    totals: dict = {k: 0.0 for k in KS}
    totals["mrr"] = 0.0
    for s, rel in seeds:
        scores = score_fn(s)
        mask = np.ones(n, bool)
        mask[s] = False
        relevant = np.zeros(n, bool)
        relevant[rel] = True
        sc, rv = scores[mask], relevant[mask]
        for k in KS:
            totals[k] += expected_hit(sc, rv, k)
        totals["mrr"] += expected_reciprocal_rank(sc, rv)
    return {k: v / max(len(seeds), 1) for k, v in totals.items()}


def evaluate_store(store: TokenStore, seeds, modalities) -> dict[str, dict[int, float]]:
    n = len(store)
    out = {}
    for m in modalities:
        out[m] = hit_table(lambda s, m=m: modality_scores(store, m, s), n, seeds)
    out["multimodal"] = hit_table(lambda s: sum(modality_scores(store, m, s) for m in modalities), n, seeds)
    return out


def evaluate_embeddings(emb, seeds) -> dict[str, dict[int, float]]:
    out = {}
    unit = {}
    for m, e in emb.modalities.items():
        v = e.vectors / (np.linalg.norm(e.vectors, axis=1, keepdims=True) + 1e-8)
        unit[m] = v
        out[m] = hit_table(lambda s, v=v: v @ v[s], len(v), seeds)
    out["multimodal"] = hit_table(lambda s: sum(v @ v[s] for v in unit.values()), len(emb.track_ids), seeds)
    return out


def random_baseline(n: int, seeds) -> dict[int, float]:
    return hit_table(lambda s: np.zeros(n), n, seeds)


# ---------------------------------------------------------------------- report


def build_report(bundle: Path, out_dir: Path, cache_dir: Path | None = None, log=print) -> dict:
    from train.tokens.embeddings import EmbeddingConfig, embed_catalog
    from talkplay.bundle import read_playlists
    from train.tokens.build import train_playlists

    t0 = time.time()
    catalog = load_catalog(bundle)
    stores = {v: load_store(store_dir(bundle, v), catalog) for v in variants(bundle)}
    if not stores:
        raise SystemExit(f"{bundle}: no token stores; run python -m train.tokens.build first")
    playlists = read_playlists(bundle)
    split = {s: [p.track_ids for p in playlists if p.split == s] for s in ("valid", "test")}
    any_store = next(iter(stores.values()))
    index = {t: i for i, t in enumerate(any_store.track_ids)}
    seeds = {s: seeds_from(pl, index) for s, pl in split.items()}
    near = {s: seeds_from(pl, index, window=1) for s, pl in split.items()}
    splits_meta = json.loads((bundle / "splits.json").read_text()) if (bundle / "splits.json").exists() else {}
    cold = set(splits_meta.get("cold_start_track_ids", []))
    modalities = [m.name for m in any_store.vocab.modalities if m.name != "dis"]
    cfg = EmbeddingConfig(**{k: tuple(v) if isinstance(v, list) else v
                             for k, v in any_store.manifest["embeddings"]["config"].items()})
    emb = embed_catalog(catalog, train_playlists(bundle), cfg, cache_dir)
    order = [emb.track_ids.index(t) for t in any_store.track_ids]
    for e in emb.modalities.values():
        e.vectors = e.vectors[order]
    emb.track_ids = list(any_store.track_ids)

    results: dict = {"catalog": str(bundle.name), "ks": list(KS), "seeds": {s: len(v) for s, v in seeds.items()},
                     "held_out_playlists": {s: len(v) for s, v in split.items()}, "cold_start_tracks": len(cold),
                     "systems": {}}
    for relevance, seed_sets in (("co-membership", seeds), ("neighbours", near)):
        systems = results.setdefault("relevance", {}).setdefault(relevance, {})
        for s in ("valid", "test"):
            systems.setdefault("random", {})[s] = {"multimodal": random_baseline(len(index), seed_sets[s])}
            systems.setdefault("embedding (unquantized)", {})[s] = evaluate_embeddings(emb, seed_sets[s])
            for name, store in stores.items():
                systems.setdefault(name, {})[s] = evaluate_store(store, seed_sets[s], modalities)
    results["systems"] = results["relevance"]["co-membership"]
    # cold-start seeds only (test): does the content fallback place unseen tracks sensibly?
    cold_rows = {index[t] for t in cold if t in index}
    cold_seeds = [(s, r) for s, r in seeds["test"] if s in cold_rows]
    results["cold_start_seeds"] = len(cold_seeds)
    if cold_seeds:
        results["cold_start"] = {name: evaluate_store(st, cold_seeds, modalities)["multimodal"]
                                 for name, st in stores.items()}
        results["cold_start"]["random"] = random_baseline(len(index), cold_seeds)
    results["stats"] = {name: st.manifest["stats"] for name, st in stores.items()}
    results["vocab"] = {name: {"positions": [p.label for p in st.vocab.positions],
                               "tokens": len(st.vocab.all_tokens())} for name, st in stores.items()}
    strict = results["relevance"]["neighbours"]
    chosen = max(stores, key=lambda v: (strict[v]["valid"]["multimodal"][10], strict[v]["valid"]["multimodal"]["mrr"]))
    results["default"] = chosen
    results["seconds"] = round(time.time() - t0, 1)
    set_default_variant(bundle, chosen, why=f"best multimodal Hit@10 for playlist neighbours on the valid playlists "
                                          f"({strict[chosen]['valid']['multimodal'][10]:.3f})")
    out_dir.mkdir(parents=True, exist_ok=True)
    name = bundle.name
    (out_dir / f"tokenizer_{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    _plots(results, modalities, out_dir / f"tokenizer_{name}.png")
    (out_dir / f"tokenizer_{name}.md").write_text(_markdown(results, modalities, name))
    log(f"report written to {out_dir}/tokenizer_{name}.md ({results['seconds']} s); default variant: {chosen}")
    return results


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def _markdown(r: dict, modalities: list[str], name: str) -> str:
    systems = [s for s in r["systems"] if s != "random"]
    lines = [f"# Tokenizer report — `{name}` catalog", "",
             "Content-based retrieval by token matching (3MToken Table 1 protocol): each track of a held-out",
             "playlist is a seed and every other catalog track is ranked by shared tokens (hierarchical for",
             "residual codes; the disambiguation position is ignored). Relevant: *co-membership* — the",
             "playlist's other tracks (the paper's definition; it saturates on a 286-track catalog) — and",
             "*neighbours* — the tracks right before and after the seed (discriminative). Hit@k and MRR are",
             "exact expectations under random tie-breaking. *Embedding (unquantized)* ranks by cosine",
             "similarity before quantization: the ceiling the codes approach.", "",
             f"Test: {r['held_out_playlists']['test']} playlists, {r['seeds']['test']} seeds "
             f"({r['cold_start_tracks']} cold-start tracks appear only in test). "
             f"Valid: {r['held_out_playlists']['valid']} playlists, {r['seeds']['valid']} seeds.", "",
             "**Caveat:** the demo's playlists are synthetic (a listener simulation that chains similar tracks by",
             "tags, musicnn embedding, tempo and energy), so content modalities are partly predictive by",
             "construction; compare systems with each other, not with the paper's absolute numbers.", ""]
    for relevance, metrics in (("co-membership", KS), ("neighbours", (10, "mrr"))):
        table = r["relevance"][relevance]
        for k in metrics:
            title = f"Hit@{k}" if k != "mrr" else "MRR"
            lines += [f"## {title} (test, relevance: {relevance})", "",
                      "| system | " + " | ".join(modalities) + " | **multimodal** |",
                      "|---|" + "---|" * (len(modalities) + 1)]
            for s in systems:
                row = table[s]["test"]
                lines.append(f"| {s} | " + " | ".join(_fmt(row[m][k]) if m in row else "—" for m in modalities)
                             + f" | **{_fmt(row['multimodal'][k])}** |")
            lines.append("| random | " + " | ".join("—" for _ in modalities)
                         + f" | {_fmt(table['random']['test']['multimodal'][k])} |")
            lines.append("")
    if r.get("cold_start"):
        lines += ["## Cold-start seeds (test tracks absent from all training playlists)", "",
                  f"{r['cold_start_seeds']} seeds; multimodal Hit@k.", "", "| system | " +
                  " | ".join(f"Hit@{k}" for k in KS) + " |", "|---|" + "---|" * len(KS)]
        for s, row in r["cold_start"].items():
            lines.append(f"| {s} | " + " | ".join(_fmt(row[str(k)] if str(k) in row else row[k]) for k in KS) + " |")
        lines.append("")
    lines += ["## Codebooks", "", "| variant | modality | codes (K) | levels | utilization | entropy | "
              "max share | tracks with data |", "|---|---|---|---|---|---|---|---|"]
    for v, st in r["stats"].items():
        for m in modalities:
            ms = st["modalities"][m]
            util = ", ".join(_fmt(x) for x in ms.get("utilization", []))
            ent = ", ".join(_fmt(x) for x in ms.get("entropy", []))
            share = ", ".join(_fmt(x) for x in ms.get("max_share", []))
            lines.append(f"| {v} | {m} | {ms['codebook_size']} | {len(ms.get('utilization', []))} | {util} | "
                         f"{ent} | {share} | {ms['tracks_with_data']} |")
    lines += ["", "| variant | positions | music tokens | unique tuples | collision rate (before disambiguation) | "
              "disambiguation codes | cold-start fallback tracks |", "|---|---|---|---|---|---|---|"]
    for v, st in r["stats"].items():
        lines.append(f"| {v} | {len(r['vocab'][v]['positions'])} | {r['vocab'][v]['tokens']} | "
                     f"{st.get('unique_tuples', '—')} | {_fmt(st['collision_rate'])} | "
                     f"{st.get('disambiguation_codes', 0)} | {st['cold_start_fallback_tracks']} |")
    lines += ["", "Collision rate = share of tracks whose full modality tuple is shared with another track; the",
              "disambiguation position (`<|dis-i|>`) then makes every tuple name exactly one track.", "",
              f"**Default variant: `{r['default']}`** — best multimodal Hit@10 with neighbour relevance on the "
              f"valid playlists ({_fmt(r['relevance']['neighbours'][r['default']]['valid']['multimodal'][10])}; "
              "co-membership saturates on this small catalog).", "",
              f"![Hit@10 per modality and code entropy](tokenizer_{name}.png)", "",
              f"Regenerate: `python -m train.tokens.build --catalog catalog/{name} && "
              f"python -m train.tokens.tokenizer_report --catalog catalog/{name}` ({r['seconds']} s for the report).", ""]
    return "\n".join(lines)


def _plots(r: dict, modalities: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [s for s in r["systems"] if s != "random"]
    groups = [*modalities, "multimodal"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.2), gridspec_kw={"width_ratios": [3, 3, 2]})
    width = 0.8 / len(systems)
    for ax, relevance in zip(axes[:2], ("neighbours", "co-membership")):
        table = r["relevance"][relevance]
        for i, s in enumerate(systems):
            vals = [table[s]["test"].get(g, {}).get(10, np.nan) for g in groups]
            ax.bar(np.arange(len(groups)) + i * width, vals, width, label=s)
        ax.axhline(table["random"]["test"]["multimodal"][10], color="gray", ls="--", label="random")
        ax.set_xticks(np.arange(len(groups)) + width * (len(systems) - 1) / 2, groups, fontsize=8)
        ax.set_ylim(0, 1.0)
        ax.set_ylabel("Hit@10 (test)")
        ax.set_title(f"Token matching, relevance: {relevance}")
    axes[0].legend(fontsize=7)
    for v, st in r["stats"].items():
        ent = [np.mean(st["modalities"][m].get("entropy", [0]) or [0]) for m in modalities]
        axes[2].plot(modalities, ent, marker="o", label=v)
    axes[2].set_ylim(0, 1.05)
    axes[2].set_title("Code entropy / log2 K (mean over levels)")
    axes[2].tick_params(axis="x", labelsize=8)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.tokens.tokenizer_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle with token stores")
    parser.add_argument("--out", type=Path, default=REPO / "reports", help="report directory (default: reports/)")
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache (default: the tokenizer's)")
    args = parser.parse_args(argv)
    from talkplay.previews import default_cache_dir

    build_report(args.catalog, args.out, args.cache or default_cache_dir() / "embeddings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
