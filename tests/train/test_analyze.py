"""Analysing an imported catalog: features rows, completed tags and captions, idempotent."""

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from talkplay.catalog import FEATURES_FILE, load_catalog
from train.catalog.analyze import analyse_catalog
from train.catalog.import_catalog import import_tracks


def test_imported_tracks_get_features_tags_and_captions(tmp_path):
    sr = 22050
    t = np.arange(sr * 12) / sr
    sf.write(tmp_path / "a.wav", (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    clicks = np.zeros(sr * 12, np.float32)
    clicks[:: sr // 2] = 0.9
    sf.write(tmp_path / "b.wav", clicks, sr)
    (tmp_path / "t.csv").write_text("track_id,title,artist,license,tags,audio_path\n"
                                    "a,Drone,X,CC0-1.0,ambient,a.wav\nb,Clicks,Y,CC0-1.0,,b.wav\n"
                                    "c,No Audio,Z,CC0-1.0,folk,\n")
    import_tracks(tmp_path / "t.csv", tmp_path / "b", progress=False)
    result = analyse_catalog(tmp_path / "b", cache_dir=tmp_path / "cache", log=lambda *_: None)
    assert result == {"analysed": 2, "already": 0, "without_audio": ["c"]}
    rows = {r["track_id"]: r for r in pq.read_table(tmp_path / "b" / FEATURES_FILE).to_pylist()}
    assert set(rows) == {"a", "b"} and len(rows["a"]["musicnn_embedding"]) == 200
    catalog = load_catalog(tmp_path / "b")
    assert catalog["a"].tags[0] == "ambient" and len(catalog["a"].tags) > 1  # curated first, then more
    assert catalog["b"].caption.endswith(".") and catalog["c"].caption == ""
    again = analyse_catalog(tmp_path / "b", cache_dir=tmp_path / "cache", log=lambda *_: None)
    assert again["analysed"] == 0 and again["already"] == 2
