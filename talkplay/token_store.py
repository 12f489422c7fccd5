"""Token stores: each track's code tuple, the codebook centroids, and an inverted index for matching.

A catalog bundle may hold several stores, one per tokenizer variant, plus a pointer to the default::

    <bundle>/tokens/
      store.json                    {"default": "<variant>"}
      <variant>/manifest.json       vocabulary (MusicVocab), variant, embedders and versions, stats
      <variant>/codes.parquet       track_id + one int column per position (e.g. playlist, audio1, audio2)
      <variant>/inverted_index.parquet   (position, code) → track_ids, for matching
      <variant>/centroids.safetensors    codebook centroids per position (the self-similarity loss target)
      <variant>/quantizers.safetensors   encoder state per modality (tokenizes new tracks without refitting)

The store is the runtime's source of valid items: a track is recommendable iff it has a row here.
Loading validates codes against the vocabulary and track ids against the catalog, and errors name the
file, row and field.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from talkplay.catalog import Catalog, CatalogError, atomic_write, read_parquet
from talkplay.tokens import MusicVocab

TOKENS_DIR = "tokens"
POINTER_FILE = "store.json"
CODES_FILE = "codes.parquet"
INDEX_FILE = "inverted_index.parquet"
CENTROIDS_FILE = "centroids.safetensors"
QUANTIZERS_FILE = "quantizers.safetensors"
MANIFEST_FILE = "manifest.json"


@dataclass
class TokenStore:
    """The code tuples of a catalog's tracks under one vocabulary."""

    vocab: MusicVocab  # positions and token strings
    track_ids: list[str]  # row order
    codes: np.ndarray  # int64 (n_tracks, n_positions)
    manifest: dict = field(default_factory=dict)  # variant, embedders, stats, …
    root: Path | None = None  # directory it was loaded from (for centroids/quantizers)
    _row: dict[str, int] = field(default_factory=dict, repr=False)
    _postings: list[dict[int, np.ndarray]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes, dtype=np.int64).reshape(len(self.track_ids), len(self.vocab))
        self._row = {t: i for i, t in enumerate(self.track_ids)}

    def __len__(self) -> int:
        return len(self.track_ids)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._row

    @property
    def variant(self) -> str:
        return self.manifest.get("variant", "")

    def row(self, track_id: str) -> int:
        try:
            return self._row[track_id]
        except KeyError:
            raise KeyError(f"track {track_id!r} has no codes in this token store") from None

    def codes_of(self, track_id: str) -> tuple[int, ...]:
        return tuple(int(c) for c in self.codes[self.row(track_id)])

    def tokens_of(self, track_id: str) -> list[str]:
        return self.vocab.tokens_for(self.codes_of(track_id))

    def tracks_with(self, codes: Sequence[int]) -> list[str]:
        """Track ids whose full code tuple equals ``codes`` (usually one, more on a collision)."""
        rows = np.flatnonzero((self.codes == np.asarray(codes, dtype=np.int64)).all(axis=1))
        return [self.track_ids[r] for r in rows]

    def postings(self, position: int, code: int) -> np.ndarray:
        """Rows of the tracks having ``code`` at ``position`` (the inverted index)."""
        if self._postings is None:
            self._postings = _build_postings(self.codes)
        return self._postings[position].get(int(code), np.empty(0, dtype=np.int64))

    def with_tracks(self, track_ids: Sequence[str], codes: np.ndarray) -> "TokenStore":
        """A new store with ``track_ids`` appended (cold start); existing rows are unchanged."""
        dup = [t for t in track_ids if t in self._row]
        if dup:
            raise ValueError(f"tracks already in the token store: {dup[:5]}")
        codes = np.asarray(codes, dtype=np.int64).reshape(len(track_ids), len(self.vocab))
        _check_codes(self.vocab, codes, "new tracks")
        return TokenStore(self.vocab, [*self.track_ids, *track_ids], np.vstack([self.codes, codes]),
                          dict(self.manifest), self.root)

    def centroids(self) -> dict[str, np.ndarray]:
        """Codebook centroids keyed by position label (e.g. 'audio1'); {} when the store has none."""
        if self.root is None or not (self.root / CENTROIDS_FILE).exists():
            return {}
        from safetensors.numpy import load_file

        return load_file(str(self.root / CENTROIDS_FILE))


def _build_postings(codes: np.ndarray) -> list[dict[int, np.ndarray]]:
    out = []
    for p in range(codes.shape[1]):
        column = codes[:, p]
        order = np.argsort(column, kind="stable")
        values, starts = np.unique(column[order], return_index=True)
        bounds = [*starts[1:], len(order)]
        out.append({int(v): order[s:e] for v, s, e in zip(values, starts, bounds)})
    return out


def _check_codes(vocab: MusicVocab, codes: np.ndarray, where: str, path: str | None = None) -> None:
    for p, position in enumerate(vocab.positions):
        column = codes[:, p] if len(codes) else np.empty(0, dtype=np.int64)
        bad = np.flatnonzero((column < 0) | (column >= vocab.size(p)))
        if len(bad):
            msg = f"code {column[bad[0]]} out of range [0, {vocab.size(p)}) in {where}"
            raise CatalogError(path or where, msg, row=int(bad[0]) + 1, field=position.label)


# ---------------------------------------------------------------------- persistence


def store_dir(bundle: str | os.PathLike, variant: str) -> Path:
    return Path(bundle) / TOKENS_DIR / variant


def save_store(store: TokenStore, directory: str | os.PathLike, centroids: dict[str, np.ndarray] | None = None,
               quantizers: dict[str, np.ndarray] | None = None) -> Path:
    """Write a store (codes, inverted index, manifest and optional tensors) atomically per file."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    _check_codes(store.vocab, store.codes, "store to save", str(directory / CODES_FILE))
    columns = {"track_id": pa.array(store.track_ids, pa.string())}
    for p, position in enumerate(store.vocab.positions):
        columns[position.label] = pa.array(store.codes[:, p].astype(np.int32), pa.int32())
    codes_table = pa.table(columns)
    index_rows = {"position": [], "code": [], "track_ids": []}
    for p, postings in enumerate(_build_postings(store.codes)):
        for code, rows in sorted(postings.items()):
            index_rows["position"].append(store.vocab.positions[p].label)
            index_rows["code"].append(code)
            index_rows["track_ids"].append([store.track_ids[r] for r in rows])
    index_table = pa.table(index_rows, schema=pa.schema([("position", pa.string()), ("code", pa.int32()),
                                                         ("track_ids", pa.list_(pa.string()))]))
    manifest = {**store.manifest, "vocab": store.vocab.to_json(), "tracks": len(store)}
    atomic_write(directory / CODES_FILE, lambda tmp: pq.write_table(codes_table, tmp, compression="zstd"))
    atomic_write(directory / INDEX_FILE, lambda tmp: pq.write_table(index_table, tmp, compression="zstd"))
    for name, tensors in ((CENTROIDS_FILE, centroids), (QUANTIZERS_FILE, quantizers)):
        if tensors is not None:
            arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
            atomic_write(directory / name, lambda tmp, a=arrays: save_file(a, str(tmp)))
    text = json.dumps(manifest, indent=2, sort_keys=True, default=_json_default) + "\n"
    atomic_write(directory / MANIFEST_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    store.manifest, store.root = manifest, directory
    return directory


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def load_store(directory: str | os.PathLike, catalog: Catalog | None = None) -> TokenStore:
    """Load and validate a token store directory.

    Args:
        catalog: if given, every track id must be in it (a stale store is an error, not a surprise).
    Raises:
        CatalogError: naming the file, row and field of the first problem.
    """
    directory = Path(directory)
    mpath = directory / MANIFEST_FILE
    if not mpath.is_file():
        raise CatalogError(mpath, "token store manifest not found")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        vocab = MusicVocab.from_json(manifest["vocab"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise CatalogError(mpath, f"malformed token store manifest ({err})", field="vocab") from err
    cpath = directory / CODES_FILE
    table = read_parquet(cpath)
    labels = [p.label for p in vocab.positions]
    missing = [c for c in ["track_id", *labels] if c not in table.schema.names]
    if missing:
        raise CatalogError(cpath, f"missing column(s) {missing}", field=missing[0])
    track_ids = table.column("track_id").to_pylist()
    for row, t in enumerate(track_ids, 1):
        if not t:
            raise CatalogError(cpath, "empty track_id", row=row, field="track_id")
    if len(set(track_ids)) != len(track_ids):
        seen: set[str] = set()
        for row, t in enumerate(track_ids, 1):
            if t in seen:
                raise CatalogError(cpath, f"duplicate track_id {t!r}", row=row, field="track_id")
            seen.add(t)
    codes = np.stack([table.column(c).to_numpy().astype(np.int64) for c in labels], axis=1) if len(track_ids) else \
        np.zeros((0, len(labels)), dtype=np.int64)
    _check_codes(vocab, codes, "codes", str(cpath))
    if catalog is not None:
        for row, t in enumerate(track_ids, 1):
            if t not in catalog:
                raise CatalogError(cpath, f"track {t!r} is not in catalog {catalog.root}", row=row, field="track_id")
    store = TokenStore(vocab, track_ids, codes, manifest, directory)
    ipath = directory / INDEX_FILE
    if ipath.exists():
        store._postings = _read_postings(ipath, store)
    return store


def _read_postings(path: Path, store: TokenStore) -> list[dict[int, np.ndarray]]:
    table = read_parquet(path).to_pylist()
    label_pos = {p.label: i for i, p in enumerate(store.vocab.positions)}
    postings: list[dict[int, np.ndarray]] = [{} for _ in store.vocab.positions]
    for row, r in enumerate(table, 1):
        p = label_pos.get(r["position"])
        if p is None:
            raise CatalogError(path, f"unknown position {r['position']!r}", row=row, field="position")
        try:
            rows = np.array([store.row(t) for t in r["track_ids"]], dtype=np.int64)
        except KeyError as err:
            raise CatalogError(path, str(err), row=row, field="track_ids") from err
        postings[p][int(r["code"])] = np.sort(rows)
    total = sum(len(rows) for rows in postings[0].values()) if postings else 0
    if total != len(store):
        raise CatalogError(path, f"index covers {total} tracks but codes.parquet has {len(store)}: rebuild the store")
    return postings


def variants(bundle: str | os.PathLike) -> list[str]:
    """Names of the token stores of a bundle."""
    root = Path(bundle) / TOKENS_DIR
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST_FILE).is_file()) if root.is_dir() else []


def default_variant(bundle: str | os.PathLike) -> str:
    """The variant named by tokens/store.json (or the only one there is)."""
    pointer = Path(bundle) / TOKENS_DIR / POINTER_FILE
    if pointer.is_file():
        try:
            return json.loads(pointer.read_text(encoding="utf-8"))["default"]
        except (json.JSONDecodeError, KeyError) as err:
            raise CatalogError(pointer, f"expected {{'default': '<variant>'}} ({err})", field="default") from err
    found = variants(bundle)
    if len(found) == 1:
        return found[0]
    raise CatalogError(Path(bundle) / TOKENS_DIR, f"no default token store among {found}")


def set_default_variant(bundle: str | os.PathLike, variant: str, why: str = "") -> None:
    text = json.dumps({"default": variant, **({"why": why} if why else {})}, indent=2) + "\n"
    atomic_write(Path(bundle) / TOKENS_DIR / POINTER_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def load_default_store(bundle: str | os.PathLike, catalog: Catalog | None = None) -> TokenStore:
    return load_store(store_dir(bundle, default_variant(bundle)), catalog)

