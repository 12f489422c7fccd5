"""One command for a catalog's training data: playlists (if needed), conversations, continuation sequences, stats.

    python -m train.data.build --catalog catalog/demo        # → catalog/demo/data/*.jsonl.gz + reports/data_demo.md

Steps (all seeded, deterministic):

1. playlists — the bundle's own (imported real playlists, split by ``train.data.splits`` if they have no
   split yet); a bundle without playlists gets synthetic ones from the listener simulation
   (``train.data.playlists``), marked synthetic;
2. conversations — one per playlist from the offline template generator (``train.data.conversations``),
   every one validated against the schema and the catalog (grounded replies, no repeats);
3. playlist-continuation examples (``train.data.sequences``);
4. ``<bundle>/data/manifest.json`` (seed, generator, counts, file checksums) and
   ``reports/data_<catalog>.md`` — the paper's Table 1 for our data, intents, held-out phrasing and
   cold-start coverage, and sample turns from the test split.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.data.build")

import argparse
import json
import sys
import time
from pathlib import Path

from talkplay.bundle import SPLITS, read_features, read_splits_json
from talkplay.catalog import atomic_write, load_catalog
from talkplay.debsource import sha256_file
from train.data.conversation_schema import (Conversation, conversation_stats, read_conversations,
                                            validate_conversation, write_conversations)
from train.data.sequences import SequenceConfig, make_examples, write_examples

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = "data"


def conversations_path(bundle: Path, split: str) -> Path:
    return bundle / DATA_DIR / f"conversations.{split}.jsonl.gz"


def sequences_path(bundle: Path, split: str) -> Path:
    return bundle / DATA_DIR / f"sequences.{split}.jsonl.gz"


def ensure_playlists(bundle: Path, seed: int, log=print):
    """The bundle's playlists with splits, synthesizing or splitting them when needed."""
    from talkplay.bundle import read_playlists

    if not (bundle / "playlists.parquet").exists():
        from train.data.playlists import SimConfig, synthesize_bundle

        log(f"{bundle}: no playlists — synthesizing them (listener simulation, seed {seed}; marked synthetic)")
        synthesize_bundle(bundle, SimConfig(seed=seed))
    playlists = read_playlists(bundle)
    if any(p.split in (None, "") for p in playlists):
        from train.data.splits import SplitConfig, split_bundle

        log(f"{bundle}: playlists have no split yet — splitting by playlist (seed {seed})")
        split_bundle(bundle, SplitConfig(seed=seed))
        playlists = read_playlists(bundle)
    return playlists


def build_data(bundle: str | Path, seed: int = 0, report_dir: Path | None = REPO / "reports", log=print) -> dict:
    """Generate, validate and write a bundle's conversations and sequences; write the stats report."""
    from train.data.conversations import ConversationConfig, generate_conversations

    t0 = time.time()
    bundle = Path(bundle)
    catalog = load_catalog(bundle)
    playlists = ensure_playlists(bundle, seed, log)
    features = read_features(bundle)
    splits_meta = read_splits_json(bundle)
    cold = set(splits_meta.get("cold_start_track_ids", []))
    config = ConversationConfig(seed=seed)
    conversations = generate_conversations(catalog, playlists, features, cold, config)
    for row, conv in enumerate(conversations, 1):
        validate_conversation(conv, catalog, "generated conversations", row)
    examples = make_examples(playlists, SequenceConfig(seed=seed))
    files, counts = {}, {}
    for split in SPLITS:
        convs = [c for c in conversations if c.split == split]
        exs = [e for e in examples if e.split == split]
        counts[split] = {"conversations": write_conversations(conversations_path(bundle, split), convs),
                         "sequences": write_examples(sequences_path(bundle, split), exs)}
        for path in (conversations_path(bundle, split), sequences_path(bundle, split)):
            files[path.name] = sha256_file(path)
    manifest = {"seed": seed, "generator": conversations[0].generator if conversations else "",
                "synthetic": any(c.synthetic for c in conversations), "counts": counts, "files": files,
                "playlists_synthetic": any(p.synthetic for p in playlists),
                "cold_start_tracks": sorted(cold), "seconds": round(time.time() - t0, 1)}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    atomic_write(bundle / DATA_DIR / "manifest.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    if report_dir is not None:
        write_report(bundle, report_dir, manifest)
    log(f"wrote {sum(c['conversations'] for c in counts.values())} conversations and "
        f"{sum(c['sequences'] for c in counts.values())} continuation examples to {bundle / DATA_DIR} "
        f"in {manifest['seconds']} s")
    return manifest


def load_split(bundle: str | Path, split: str, validate: bool = True) -> list[Conversation]:
    """Conversations of one split, validated against the bundle's catalog."""
    bundle = Path(bundle)
    return read_conversations(conversations_path(bundle, split), load_catalog(bundle) if validate else None)


def sample_turns(conversations: list[Conversation], catalog, n: int = 10) -> list[dict]:
    """The first ``n`` turns with a user request from the given conversations, spread across them."""
    out = []
    for c in conversations[:: max(1, len(conversations) // n)]:
        for user, music, reply in c.turns:
            t = catalog[music.content]
            out.append({"conversation": c.conversation_id, "intent": user.intent, "held_out": user.held_out,
                        "user": user.content, "track": f"{t.title} — {t.artist}", "rejected": music.rejected,
                        "assistant": reply.content})
            break
        if len(out) >= n:
            break
    return out


def write_report(bundle: Path, report_dir: Path, manifest: dict) -> Path:
    catalog = load_catalog(bundle)
    cold = set(manifest.get("cold_start_tracks", []))
    by_split = {s: read_conversations(conversations_path(bundle, s)) for s in SPLITS}
    stats = {s: conversation_stats(c, cold) for s, c in by_split.items()}
    name = bundle.name
    lines = [f"# Training data — `{name}` catalog", "",
             "Every conversation and playlist here is **synthetic**" if manifest["synthetic"] else "",
             "(offline template generator over a seeded listener simulation; see `train/data/conversations.py`)."
             if manifest["synthetic"] else "", "",
             "## Table 1 (as in the TalkPlay paper)", "",
             "| split | playlists | dialogues | tracks | vocabulary | avg turns | avg query words | avg response words |",
             "|---|---|---|---|---|---|---|---|"]
    for s in SPLITS:
        st = stats[s]
        lines.append(f"| {s} | {st.playlists} | {st.dialogues} | {st.tracks} | {st.vocabulary} | {st.avg_turns} | "
                     f"{st.avg_query_words} | {st.avg_response_words} |")
    lines += ["", "Vocabulary = distinct lower-cased word types in user and assistant text.", "",
              "## Generalization checks", "", "| split | user turns with held-out phrasing | dialogues with a "
              "cold-start track | continuation examples |", "|---|---|---|---|"]
    for s in SPLITS:
        users = sum(len(c.messages) // 3 for c in by_split[s])
        st = stats[s]
        lines.append(f"| {s} | {st.held_out_user_turns} of {users} | {st.cold_start_dialogues} | "
                     f"{manifest['counts'][s]['sequences']} |")
    lines += ["", f"{len(cold)} cold-start tracks appear only in test; held-out phrasings (templates and slot "
              "words) never appear in train or valid.", "", "## Intents (user turns)", "",
              "| intent | " + " | ".join(SPLITS) + " |", "|---|" + "---|" * len(SPLITS)]
    intents = sorted({i for s in SPLITS for i in stats[s].intents}, key=lambda i: -stats["train"].intents.get(i, 0))
    for i in intents:
        lines.append(f"| {i} | " + " | ".join(str(stats[s].intents.get(i, 0)) for s in SPLITS) + " |")
    lines += ["", "## Ten sample turns (test split)", ""]
    for t in sample_turns(by_split["test"], catalog):
        flag = " *(held-out phrasing)*" if t["held_out"] else ""
        rej = " *(rejected next)*" if t["rejected"] else ""
        lines += [f"- **user** ({t['intent']}){flag}: {t['user']}", f"  - **music**: {t['track']}{rej}",
                  f"  - **assistant**: {t['assistant']}"]
    lines += ["", f"Regenerate: `python -m train.data.build --catalog catalog/{name}` (seed {manifest['seed']}, "
              f"{manifest['seconds']} s).", ""]
    report_dir.mkdir(parents=True, exist_ok=True)
    out = report_dir / f"data_{name}.md"
    out.write_text("\n".join(lines), encoding="utf-8")
    (report_dir / f"data_{name}.json").write_text(json.dumps(
        {"manifest": manifest, "stats": {s: vars(stats[s]) for s in SPLITS}}, indent=2, default=str) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.data.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle directory")
    parser.add_argument("--seed", type=int, default=0, help="seed for playlists (if synthesized), splits and dialogues")
    parser.add_argument("--reports", type=Path, default=REPO / "reports", help="where data_<catalog>.md goes")
    args = parser.parse_args(argv)
    build_data(args.catalog, args.seed, args.reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
