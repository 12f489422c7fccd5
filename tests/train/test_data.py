"""train.data.build end to end on a fixture: playlists synthesized and split, conversations validated, report."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from talkplay.catalog import FEATURES_FILE, Track, save_catalog
from train.data.build import build_data, load_split


def test_build_data_from_a_bare_catalog(tmp_path):
    rng = np.random.default_rng(0)
    styles = ("orchestral", "chiptune", "folk", "electronic")
    tracks, feats = [], []
    for i in range(48):
        style = styles[i % 4]
        tracks.append(Track(track_id=f"t{i:02d}", title=f"Tune {i}", artist=f"Artist {i % 6}", license="CC0-1.0",
                            attribution="fixture", source="user", album=f"{style.title()} Album", year=2000 + i % 20,
                            tags=(style, "fast" if i % 2 else "slow"), caption=f"A {style} piece."))
        feats.append({"track_id": f"t{i:02d}", "package": style, "curated_tags": [style], "auto_tags": [],
                      "descriptor_tags": [], "tempo_bpm": float(80 + i), "tempo_confidence": 0.8, "key": "C",
                      "mode": "major", "key_strength": 0.7, "loudness_lufs": -14.0, "energy": float(rng.uniform()),
                      "brightness": float(rng.uniform()), "percussiveness": float(rng.uniform()),
                      "onset_rate": 2.0, "musicnn_embedding": rng.normal(size=200).tolist()})
    save_catalog(tmp_path, tracks)
    pq.write_table(pa.Table.from_pylist(feats), tmp_path / FEATURES_FILE)
    manifest = build_data(tmp_path, seed=3, report_dir=tmp_path / "reports", log=lambda *_: None)
    assert (tmp_path / "playlists.parquet").exists() and (tmp_path / "splits.json").exists()
    assert manifest["synthetic"] and manifest["counts"]["train"]["conversations"] > 0
    test = load_split(tmp_path, "test")  # validated against the catalog on read
    assert test and all(c.split == "test" for c in test)
    report = (tmp_path / "reports" / f"data_{tmp_path.name}.md").read_text()
    assert "Table 1" in report and "synthetic" in report and "**assistant**" in report
    again = build_data(tmp_path, seed=3, report_dir=None, log=lambda *_: None)
    assert again["files"] == manifest["files"]  # deterministic, byte for byte
    assert json.loads((tmp_path / "data" / "manifest.json").read_text())["files"] == manifest["files"]
