"""Retrain on your own catalog: the demo bundle's build path as resumable stages, from a bundle to a served model.

    python -m train.catalog.byo retrain --catalog catalog/mine [--steps 420] [--run runs/mine]

The bundle comes from ``train.catalog.byo prepare`` (or ``train.catalog.import_catalog tracks``, optionally with ``… playlists``).
Each stage calls the module that builds the demo bundle — nothing here re-implements them:

    playlists  the bundle's own (imported) playlists; a catalog without any gets synthetic ones from the listener
               simulation (``train.data.playlists.synthesize_bundle``; the demo's density, ~17.5 per track), every row
               marked ``synthetic``
    splits     train / valid / test by playlist with cold-start tracks (``train.data.splits``); an error when train would
               be empty, a warning naming the fix when valid or test would be
    tokens     residual k-means codes (``train.tokens.build``, store ``rkmeans``) reordered text-first (``rkmeans_text``,
               the store the demo's checkpoint uses), made the bundle's default store
    data       synthetic conversations and playlist-continuation examples (``train.data.build.build_data``)
    train      ``train.training.sft`` with the demo recipe (:class:`Recipe`: text-grounded rows, 70 % text → music requests);
               an interrupted run resumes from ``<run>/last``
    package    ``train.catalog.package`` → ``<bundle>/model`` (checkpoint + MODEL_CARD.md)
    evaluate   ``train.evaluation.evaluate`` on the test split (baselines and the model) → ``<run>/reports/eval_<name>.*``

and last the app's own start check (``talkplay.preflight.check_bundle``). A rerun skips every stage whose outputs
are complete and whose inputs (checksums of the files it reads, the recipe) are unchanged since it ran — recorded
in ``<run>/stages.json`` — and redoes the rest. A failure names the stage and the command to rerun.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.training.retrain is a module of the train package: import it, or use python -m")

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from talkplay.catalog import FEATURES_FILE, PLAYLISTS_FILE, CatalogError, atomic_write, load_catalog

STAGES = ("playlists", "splits", "tokens", "data", "train", "package", "evaluate")
STAGES_FILE = "stages.json"  # in the run directory: what each finished stage read (checksums) and how long it took
STORE = "rkmeans_text"  # the recipe's store: residual k-means codes in text-first order (README, "The model")
FITTED_STORE = "rkmeans"  # the fitted store it is reordered from
# The demo's synthetic playlists: 5,000 over 286 tracks (train.data.playlists.SimConfig sized for it).
PLAYLISTS_PER_TRACK = 5000 / 286
# Fewer tracks than a synthetic playlist's shortest length (8) plus held-out cold-start tracks leave nothing to
# learn an order from: every playlist would be nearly the whole catalog.
MIN_TRACKS = 10
MODEL_SYSTEMS = ("talkplay",)  # the bundle's own model as an evaluated system (train.evaluation.model_eval.ModelRanker)


@dataclass(frozen=True)
class Recipe:
    """The demo's training recipe (README, "The model"); every field is the ``train.training.sft`` flag of the same name."""

    max_steps: int = 420  # optimizer steps: the demo's schedule (its shipped checkpoint stopped at step 300)
    batch_size: int = 32  # examples per step
    lr: float = 3e-4  # peak learning rate (cosine decay after the warm-up)
    warmup_steps: int = 10  # linear warm-up
    eval_every: int = 25  # valid loss + checkpoint (<run>/last, the resume point) every this many steps
    eval_examples: int = 32  # valid examples per task
    request_fraction: float = 0.7  # share of text → music requests (train.data.text_requests) among the examples
    playlist_fraction: float = 0.25  # share of playlist continuation among the rest (conversations)
    row_init: str = "text"  # music-token rows start from the base model's embedding of what each code stands for
    seed: int = 0  # data order, LoRA and row init

    def sft_args(self) -> list[str]:
        return [a for k, v in asdict(self).items() for a in (f"--{k.replace('_', '-')}", str(v))]


@dataclass(frozen=True)
class RetrainOptions:
    """One retrain run: which bundle, where the training state lives, the recipe and the evaluation."""

    catalog: Path  # the bundle (rewritten in place: playlists, tokens, data, model)
    run: Path | None = None  # training state and reports; default runs/<bundle name>
    recipe: Recipe = Recipe()  # train.training.sft settings
    base_model: str | None = None  # base model path or id (default: the offline SmolLM2)
    threads: int = 0  # torch CPU threads for training (0: every core)
    deadline_minutes: float = 0.0  # stop training (checkpointed, resumable) after this long; 0: never
    stop_after: int = 0  # stop training after this step as if interrupted (tests); 0: never
    fresh_training: bool = False  # discard a training state made from other data or tokens instead of refusing
    seed: int = 0  # playlists, splits and conversations
    eval_conversations: int = 20  # test conversations evaluated (the demo's README figure uses 20)
    systems: tuple[str, ...] = ("random", "popularity", "bm25", "dense", "item2vec", "talkplay")  # evaluated
    precision: str = "bf16"  # the model's precision when evaluated on the CPU
    reports: Path | None = None  # data and evaluation reports; default <run>/reports

    def __post_init__(self) -> None:
        object.__setattr__(self, "catalog", Path(self.catalog))
        object.__setattr__(self, "run", Path(self.run) if self.run else Path("runs") / self.catalog.name)
        object.__setattr__(self, "reports", Path(self.reports) if self.reports else self.run / "reports")


class RetrainError(Exception):
    """A stage failed or cannot run; the message names the stage and the command to rerun."""

    def __init__(self, stage: str, message: str, command: str):
        super().__init__(f"stage '{stage}': {message}\n  fix that and rerun (finished stages are kept): {command}")
        self.stage = stage


class Interrupted(Exception):
    """Training stopped before its last step (deadline or --stop-after); rerunning resumes it."""


def _sha(path: Path) -> str:
    if not path.exists():
        return "absent"
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Context:
    """What every stage sees."""

    options: RetrainOptions
    command: str  # the command line that reruns this retrain
    log: Callable[[str], None]
    cache_dir: Path  # embeddings and evaluation caches
    text_embedder: Callable | None = None  # texts → vectors for tokens and the dense/text match (None: MiniLM)
    embedding: object = None  # train.tokens.embeddings.EmbeddingConfig (None: tokenize's defaults)
    records: dict = field(default_factory=dict)

    @property
    def bundle(self) -> Path:
        return self.options.catalog

    @property
    def run(self) -> Path:
        return self.options.run

    def digests(self, *relpaths: str, extra: object = None) -> dict[str, str]:
        """Checksums of bundle files a stage reads (run files start with ``run:``), plus any settings."""
        out = {p: _sha(self.run / p[4:] if p.startswith("run:") else self.bundle / p) for p in relpaths}
        if extra is not None:
            out["settings"] = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode()).hexdigest()
        return out

    def save_records(self) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.records, indent=1, sort_keys=True) + "\n"
        atomic_write(self.run / STAGES_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ------------------------------------------------------------------------------------------------- stages


def _playlists(ctx: Context) -> str | None:
    from talkplay.bundle import read_playlists
    from train.data.playlists import SimConfig, synthesize_bundle

    path = ctx.bundle / PLAYLISTS_FILE
    inputs = ctx.digests("tracks.parquet", FEATURES_FILE, extra={"seed": ctx.options.seed})
    mine = ctx.records.get("playlists")
    if path.exists() and mine is None:
        playlists = read_playlists(ctx.bundle)
        kind = "synthetic" if all(p.synthetic for p in playlists) else "imported"
        return f"kept the bundle's {len(playlists)} {kind} playlists ({PLAYLISTS_FILE})"
    if path.exists() and mine.get("inputs") == inputs:
        return None  # synthesized by an earlier run from this very catalog
    n = len(load_catalog(ctx.bundle))
    config = SimConfig(n_playlists=max(100, round(n * PLAYLISTS_PER_TRACK)), seed=ctx.options.seed)
    ctx.log(f"  no playlists of its own: synthesizing {config.n_playlists} with the listener simulation "
            f"(train.data.playlists, seed {config.seed}); every row is marked synthetic")
    stats = synthesize_bundle(ctx.bundle, config)
    said = f"{stats['playlists']} synthetic playlists (origin {stats['origin']}), split {stats['splits']}"
    ctx.records["playlists"] = {"inputs": inputs, "seconds": stats["seconds"], "summary": said}
    return said


def _splits_done(ctx: Context) -> bool:
    from talkplay.bundle import read_playlists
    from talkplay.bundle import SPLITS_FILE, read_cold_ids

    if not (ctx.bundle / SPLITS_FILE).exists():
        return False
    catalog = load_catalog(ctx.bundle)
    try:
        cold = read_cold_ids(ctx.bundle)
    except CatalogError:
        return False
    return all(t in catalog for t in cold) and all(p.split for p in read_playlists(ctx.bundle))


def _splits(ctx: Context) -> str:
    from talkplay.bundle import SPLITS_FILE
    from train.data.splits import SplitConfig, split_bundle

    done = not _splits_done(ctx)
    if done:
        ctx.log(f"  splitting the playlists by playlist (train.data.splits, seed {ctx.options.seed})")
        split_bundle(ctx.bundle, SplitConfig(seed=ctx.options.seed))
    report = json.loads((ctx.bundle / SPLITS_FILE).read_text(encoding="utf-8"))
    counts = {s: report["counts"][s]["playlists"] for s in ("train", "valid", "test")}
    more = (f"import more playlists (python -m train.catalog.import_catalog playlists … --catalog {ctx.bundle}), or move "
            f"{ctx.bundle / PLAYLISTS_FILE} aside so synthetic ones are made")
    if counts["train"] == 0:
        raise ValueError(f"no training playlists ({counts}): {more}")
    for split, why in (("valid", "the best checkpoint is then simply the last one"),
                       ("test", "the evaluate stage is then skipped")):
        if counts[split] == 0:
            ctx.log(f"  warning: the {split} split is empty ({counts}); {why}. Fix: {more}; or give {split} a larger "
                    f"share: python -m train.data.splits --catalog {ctx.bundle} --{split} 0.15 --train 0.75")
    if report.get("train_uncovered_track_ids"):
        ctx.log(f"  note: {len(report['train_uncovered_track_ids'])} tracks are in no training playlist "
                "(the model learns them from text → music requests only)")
    summary = f"{counts} playlists, {len(report['cold_start_track_ids'])} cold-start tracks (test only)"
    return summary + ("" if done else "; splits.json matches the playlists: nothing to redo")


def _token_inputs(ctx: Context) -> dict:
    emb = ctx.embedding
    return ctx.digests("tracks.parquet", PLAYLISTS_FILE, FEATURES_FILE,
                       extra={"embedding": asdict(emb) if emb is not None else None, "seed": ctx.options.recipe.seed})


def _tokens_ok(ctx: Context) -> bool:
    from talkplay.token_store import default_variant, load_store, store_dir

    try:
        store = load_store(store_dir(ctx.bundle, STORE))
        return default_variant(ctx.bundle) == STORE and "coded_by" not in store.manifest and \
            set(store.track_ids) == {t.track_id for t in load_catalog(ctx.bundle)}
    except (CatalogError, OSError, ValueError, KeyError):
        return False


def _tokens(ctx: Context) -> str:
    from talkplay.token_store import load_store, set_default_variant, store_dir
    from train.tokens.embeddings import EmbeddingConfig
    from train.tokens.build import TEXT_FIRST_ORDER, reorder_store, tokenize_catalog

    if not (ctx.bundle / FEATURES_FILE).exists():
        ctx.log(f"  warning: {ctx.bundle / FEATURES_FILE} is missing, so every track gets the 'no audio' code; "
                f"python -m train.catalog.byo prepare analyses the audio")
    old = store_dir(ctx.bundle, STORE)
    if old.exists() and "coded_by" in load_store(old).manifest:
        ctx.log(f"  replacing tokens/{STORE}, which holds the shipped model's codes (train.catalog.byo prepare): the bundle's "
                "model/ serves again once the package stage has written the retrained one")
    config = ctx.embedding or EmbeddingConfig(seed=ctx.options.recipe.seed)
    ctx.log(f"  fitting {FITTED_STORE} (train.tokens.build: residual k-means, 2 levels, disambiguated), then {STORE} "
            f"in text-first order {' → '.join(TEXT_FIRST_ORDER)}")
    tokenize_catalog(ctx.bundle, [FITTED_STORE], ctx.cache_dir / "embeddings", config,
                     {"disambiguate": True, "seed": ctx.options.recipe.seed}, text_embedder=ctx.text_embedder,
                     log=lambda s: ctx.log("  " + s))
    store = reorder_store(ctx.bundle, FITTED_STORE, STORE, TEXT_FIRST_ORDER)
    set_default_variant(ctx.bundle, STORE, why="the retrain recipe's text-first store (train.catalog.byo retrain)")
    collisions = store.manifest["stats"]["collision_rate"]
    return f"{len(store)} tracks, {len(store.vocab)} positions ({store.vocab}), collision rate {collisions:.3f}"


def _data_inputs(ctx: Context) -> dict:
    return ctx.digests("tracks.parquet", PLAYLISTS_FILE, "splits.json", FEATURES_FILE, extra={"seed": ctx.options.seed})


def _data_ok(ctx: Context) -> bool:
    from train.data.build import DATA_DIR

    manifest = ctx.bundle / DATA_DIR / "manifest.json"
    if not manifest.exists():
        return False
    files = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
    return bool(files) and all(_sha(ctx.bundle / DATA_DIR / name) == digest for name, digest in files.items())


def _data(ctx: Context) -> str:
    from train.data.build import build_data

    ctx.log(f"  conversations (offline templates) and playlist continuations (train.data.build, seed {ctx.options.seed}); "
            f"report → {ctx.options.reports}")
    manifest = build_data(ctx.bundle, ctx.options.seed, ctx.options.reports, log=lambda s: ctx.log("  " + s))
    counts = {s: c["conversations"] for s, c in manifest["counts"].items()}
    if not counts.get("train"):
        raise ValueError(f"no training conversations were made ({counts})")
    return f"conversations per split {counts} (synthetic: {manifest['synthetic']})"


def _train_inputs(ctx: Context) -> dict:
    recipe = {k: v for k, v in asdict(ctx.options.recipe).items() if k != "max_steps"}  # more steps = resume
    return ctx.digests("tracks.parquet", "data/manifest.json", f"tokens/{STORE}/codes.parquet",
                       f"tokens/{STORE}/manifest.json", extra={"recipe": recipe, "base": ctx.options.base_model})


def _summary(run: Path) -> dict | None:
    from train.training.sft import SUMMARY_FILE

    path = run / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _train_ok(ctx: Context) -> bool:
    summary = _summary(ctx.run)
    return bool(summary) and summary["steps"] >= ctx.options.recipe.max_steps


def sft_argv(options: RetrainOptions) -> list[str]:
    """The ``train.training.sft`` arguments of the recipe (the README's demo command, for this bundle and run)."""
    argv = ["--catalog", str(options.catalog), "--variant", STORE, "--out", str(options.run),
            *options.recipe.sft_args(), "--no-export"]  # packaging reads <run>/best; a merged final/ is 0.5 GB
    if options.base_model:
        argv += ["--base-model", options.base_model]
    if options.threads:
        argv += ["--threads", str(options.threads)]
    if options.deadline_minutes:
        argv += ["--deadline-minutes", str(options.deadline_minutes)]
    if options.stop_after:
        argv += ["--stop-after", str(options.stop_after)]
    return argv


def _train(ctx: Context, inputs: dict) -> str:
    from train.training import sft

    state = ctx.run / "last" / sft.META_FILE
    started = ctx.records.get("train", {}).get("inputs")
    if state.exists() and started != inputs:
        if not ctx.options.fresh_training:
            raise ValueError(f"{ctx.run} holds a training state made from other data, tokens or settings; "
                             "add --fresh-training to discard it, or choose another --run")
        ctx.log(f"  --fresh-training: discarding the training state in {ctx.run}")
        for name in ("last", "best", "log.csv", sft.SUMMARY_FILE):
            path = ctx.run / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    ctx.records["train"] = {"inputs": inputs, "done": False}  # a resumed run must find its own inputs again
    ctx.save_records()
    if state.exists():
        ctx.log(f"  resuming from step {json.loads(state.read_text())['step']} ({ctx.run}/last)")
    argv = sft_argv(ctx.options)
    ctx.log("  python -m train.training.sft " + " ".join(argv))
    sft.main(argv)
    summary = _summary(ctx.run)
    if not summary or summary["steps"] < ctx.options.recipe.max_steps:
        step = json.loads(state.read_text())["step"] if state.exists() else 0
        raise Interrupted(f"training stopped at step {step} of {ctx.options.recipe.max_steps}; rerun to resume: "
                          f"{ctx.command}")
    return (f"{summary['steps']} steps in {summary['wall_seconds'] / 60:.1f} min ({summary['hardware']}); best valid "
            f"loss {summary['best_valid_loss']} at step {summary['best_step']}")


def _package_ok(ctx: Context) -> bool:
    from talkplay.checkpoint import CheckpointError, verify_checkpoint
    from talkplay.token_store import load_default_store

    try:
        verify_checkpoint(ctx.bundle, load_default_store(ctx.bundle))
        return True
    except (CatalogError, CheckpointError, OSError, ValueError):
        return False


def _package(ctx: Context) -> str:
    from train.catalog.package import package

    ctx.log(f"  python -m train.catalog.package --run {ctx.run} --catalog {ctx.bundle} --variant {STORE}")
    out = package(ctx.run, ctx.bundle, base_model=ctx.options.base_model, variant=STORE)
    size = sum(f.stat().st_size for f in out.iterdir())
    return f"{out}: {size / 1e6:.1f} MB ({', '.join(sorted(f.name for f in out.iterdir()))})"


def _eval_path(ctx: Context) -> Path:
    return ctx.options.reports / f"eval_{load_catalog(ctx.bundle).name}.json"


def _evaluate(ctx: Context) -> str:
    from talkplay.checkpoint import read_info
    from talkplay.model import ModelConfig
    from talkplay.recommender import Recommender
    from train.evaluation.baselines import BASELINES, build_baselines
    from train.data.conversation_schema import read_conversations
    from train.data.build import conversations_path
    from train.evaluation.evaluate import evaluate_systems, write_report
    from train.evaluation.model_eval import ModelRanker
    from talkplay.bundle import read_playlists

    if not read_conversations(conversations_path(ctx.bundle, "test")):
        ctx.log("  warning: no test conversations (the test split is empty): nothing to evaluate")
        return "skipped: no test conversations"
    names = ctx.options.systems
    unknown = [n for n in names if n not in BASELINES and n not in MODEL_SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}: expected some of {[*BASELINES, *MODEL_SYSTEMS]}")
    train_playlists = [p.track_ids for p in read_playlists(ctx.bundle) if p.split == "train"]
    train_convs = read_conversations(conversations_path(ctx.bundle, "train"))
    systems = build_baselines([n for n in names if n in BASELINES], train_playlists, train_convs, ctx.options.seed,
                              ctx.cache_dir / "eval", text_embedder=ctx.text_embedder)
    if "talkplay" in names:
        config = ModelConfig(base_model=read_info(ctx.bundle).base_model, device="cpu", precision=ctx.options.precision)
        kwargs = {"text_embedder": (lambda: ctx.text_embedder)} if ctx.text_embedder is not None else {}
        systems["talkplay"] = ModelRanker(Recommender.load(ctx.bundle, config, **kwargs))
    systems = {n: systems[n] for n in names}
    ctx.log(f"  python -m train.evaluation.evaluate --catalog {ctx.bundle} --systems {' '.join(names)} "
            f"--max-conversations {ctx.options.eval_conversations} --out {ctx.options.reports}")
    result = evaluate_systems(ctx.bundle, systems, "test", ctx.options.eval_conversations, seed=ctx.options.seed,
                              log=lambda s: ctx.log("  " + s))
    result["command"] = ctx.command
    js, md = write_report(result, ctx.options.reports)
    mrr = {n: round(s["macro_over_turns"]["mrr"], 3) for n, s in result["systems"].items()}
    return f"{result['turns']} test turns; MRR {mrr} → {md}"


# ------------------------------------------------------------------------------------------------- driver


def _run_stage(ctx: Context, name: str, inputs: dict | None, ok: Callable[[], bool], run: Callable[[], str]) -> None:
    """Skip ``name`` when its record matches ``inputs`` and ``ok()``; else run it and record it."""
    record = ctx.records.get(name, {})
    if inputs is not None and record.get("done") and record.get("inputs") == inputs and ok():
        ctx.log(f"[{name}] done already ({record.get('summary', '')}): skipped")
        return
    ctx.log(f"[{name}] …")
    t0 = time.time()
    summary = run()
    seconds = round(time.time() - t0, 1)
    ctx.records[name] = {"inputs": inputs, "done": True, "seconds": seconds, "summary": summary}
    ctx.save_records()
    ctx.log(f"[{name}] {summary} ({seconds} s)")


def retrain(options: RetrainOptions, command: str | None = None, log: Callable[[str], None] = print,
            cache_dir: Path | None = None, text_embedder=None, embedding=None) -> dict:
    """Run every stage that is not done yet (see the module docstring); returns ``<run>/stages.json``'s records.

    Args:
        command: the command line that reruns this (named in errors); default: the CLI form of ``options``.
        cache_dir: embeddings and evaluation caches (default: the TalkPlay cache).
        text_embedder: texts → vectors (with an ``id``) for the text modalities, the dense baseline and the
            engine's text match; None: all-MiniLM-L6-v2 (tests pass a tiny one).
        embedding: a ``train.tokens.embeddings.EmbeddingConfig`` for the tokens stage (default: tokenize's).
    Raises:
        RetrainError: a stage failed (message: the stage, the cause, the command to rerun).
        Interrupted: training stopped early (deadline, ``stop_after``); rerunning resumes it.
    """
    from talkplay.preflight import check_bundle
    from talkplay.previews import default_cache_dir

    command = command or f"python -m train.catalog.byo retrain --catalog {options.catalog} --run {options.run}"
    ctx = Context(options, command, log, Path(cache_dir) if cache_dir else default_cache_dir(), text_embedder,
                  embedding)
    try:
        catalog = load_catalog(options.catalog)
    except CatalogError as err:
        raise RetrainError("playlists", str(err), command) from err
    if len(catalog) < MIN_TRACKS:
        raise RetrainError("playlists", f"{options.catalog} has {len(catalog)} tracks; retraining needs at least "
                           f"{MIN_TRACKS} (a synthetic playlist is 8 or more tracks, and some tracks are held out "
                           "for the test split). Serve a small catalog with the shipped model instead: python -m "
                           "train.catalog.byo prepare --tracks … --out …", command)
    path = options.run / STAGES_FILE
    ctx.records = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    log(f"retraining {options.catalog} ({len(catalog)} tracks); training state and reports in {options.run}")

    stage = "playlists"
    try:
        for stage in STAGES:
            if stage == "playlists":
                ctx.log("[playlists] …")
                said = _playlists(ctx)
                ctx.log(f"[playlists] {said}" if said else "[playlists] done already (synthesized from this "
                        "catalog by an earlier run): skipped")
                ctx.save_records()
            elif stage == "splits":
                ctx.log(f"[splits] {_splits(ctx)}")
            elif stage == "tokens":
                _run_stage(ctx, stage, _token_inputs(ctx), lambda: _tokens_ok(ctx), lambda: _tokens(ctx))
            elif stage == "data":
                _run_stage(ctx, stage, _data_inputs(ctx), lambda: _data_ok(ctx), lambda: _data(ctx))
            elif stage == "train":
                inputs = _train_inputs(ctx)
                _run_stage(ctx, stage, inputs, lambda: _train_ok(ctx), lambda: _train(ctx, inputs))
            elif stage == "package":
                _run_stage(ctx, stage, ctx.digests("run:best/trainable.safetensors", f"tokens/{STORE}/codes.parquet"),
                           lambda: _package_ok(ctx), lambda: _package(ctx))
            elif stage == "evaluate":
                inputs = ctx.digests("model/checkpoint.json", "model/adapter.safetensors", "data/manifest.json",
                                     extra={"systems": options.systems, "n": options.eval_conversations,
                                            "reports": options.reports})
                _run_stage(ctx, stage, inputs, lambda: _eval_path(ctx).exists(), lambda: _evaluate(ctx))
        stage = "serve check"
        check_bundle(options.catalog)
    except Interrupted:
        raise
    except (CatalogError, ValueError, OSError) as err:  # CheckpointError is a ValueError; FileNotFoundError an OSError
        raise RetrainError(stage, str(err), command) from err
    except Exception as err:  # anything else still names the stage and the way back in
        raise RetrainError(stage, f"{type(err).__name__}: {err}", command) from err
    log(f"{options.catalog} passes the app's start check. Serve it: TALKPLAY_CATALOG={options.catalog} python app.py")
    return ctx.records


def add_arguments(p) -> None:
    """``train.catalog.byo retrain``'s flags."""
    d, r = RetrainOptions(Path("x")), Recipe()
    p.add_argument("--catalog", type=Path, required=True, help="bundle to retrain (from train.catalog.byo prepare or the importer)")
    p.add_argument("--run", type=Path, default=None, help="training state and reports (default: runs/<bundle name>)")
    p.add_argument("--steps", type=int, default=r.max_steps,
                   help="training steps (the demo schedule); raising it later resumes and extends the run")
    p.add_argument("--batch-size", type=int, default=r.batch_size, help="examples per step")
    p.add_argument("--lr", type=float, default=r.lr, help="peak learning rate")
    p.add_argument("--base-model", default=None, help="base model path or id (default: the offline SmolLM2-135M)")
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads for training (0: every core)")
    p.add_argument("--deadline-minutes", type=float, default=d.deadline_minutes,
                   help="stop training after this long (checkpointed; rerun to resume); 0: never")
    p.add_argument("--fresh-training", action="store_true",
                   help="discard a training state made from other data or tokens (default: refuse)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for playlists, splits, conversations and training")
    p.add_argument("--eval-conversations", type=int, default=d.eval_conversations,
                   help="test conversations evaluated")
    p.add_argument("--systems", nargs="+", default=list(d.systems), help="evaluated systems (baselines, talkplay)")
    p.add_argument("--reports", type=Path, default=None, help="data and evaluation reports (default: <run>/reports)")
    p.add_argument("--cache", type=Path, default=None, help="embedding and evaluation cache (default: TalkPlay's)")


def options_from_args(args) -> RetrainOptions:
    recipe = replace(Recipe(), max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    return RetrainOptions(args.catalog, args.run, recipe, args.base_model, args.threads, args.deadline_minutes,
                          fresh_training=args.fresh_training, seed=args.seed,
                          eval_conversations=args.eval_conversations, systems=tuple(args.systems),
                          reports=args.reports)


def describe(records: dict, stages: Sequence[str] = STAGES) -> dict:
    """Seconds and summary per stage (for the CLI's closing JSON)."""
    return {s: {"seconds": records[s].get("seconds"), "summary": records[s].get("summary")}
            for s in stages if s in records}
