"""Playlist-continuation examples: prefix/continuation bounds, split inheritance, determinism."""

from talkplay.bundle import Playlist
from train.data.sequences import SequenceConfig, make_examples, read_examples, write_examples


def playlists():
    return [Playlist(f"p{i}", "n", tuple(f"t{j}" for j in range(i + 2)), True, "fixture",
                     "test" if i % 3 == 0 else "train") for i in range(20)]


def test_examples(tmp_path):
    ex = make_examples(playlists(), SequenceConfig(max_continuation=3, seed=1))
    assert len(ex) == 19  # the 2-track playlist has no room for a prefix of 2 plus a continuation
    for e in ex:
        src = next(p for p in playlists() if p.playlist_id == e.playlist_id)
        n = len(e.prefix)
        assert 2 <= n <= 15 and src.track_ids[:n] == e.prefix
        assert e.continuation == src.track_ids[n:n + 3] and e.split == src.split and e.synthetic
    assert make_examples(playlists(), SequenceConfig(max_continuation=3, seed=1)) == ex
    write_examples(tmp_path / "s.jsonl.gz", ex)
    assert read_examples(tmp_path / "s.jsonl.gz") == ex
