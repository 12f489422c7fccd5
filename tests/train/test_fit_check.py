"""Fit check (train.evaluation.fit_check): the requests file is validated with named errors, and every number of the
report is what the systems actually return for each request (tiny model, 6-track tagged catalog)."""

import json

import pytest

from talkplay.catalog import CatalogError, Track, save_catalog
from talkplay.recommender import GenerationConfig, Recommender
from talkplay.render import RenderConfig
from train.evaluation.baselines import BM25Ranker
from train.evaluation.fit_check import FitRequest, markdown, read_requests, run_fit_check
from tests.train.test_sft import make_model, world  # noqa: F401  (fixture)

TAGS = {0: ("orchestral", "epic", "strings"), 1: ("orchestral", "calm", "piano"), 2: ("chiptune", "playful"),
        3: ("metal", "guitar", "loud"), 4: ("ambient", "calm", "drumless"), 5: ("electronic", "techno", "drums")}


@pytest.fixture(scope="module")
def tagged(world, tmp_path_factory):  # noqa: F811
    """The fixture store's six tracks with tags, saved as a bundle."""
    root = tmp_path_factory.mktemp("fit")
    tracks = [Track(f"t{i}", f"Song {i}", f"Band {i}", "CC0-1.0", "credit", f"https://example.org/{i}.ogg",
                    tags=TAGS[i], caption=f"A {TAGS[i][0]} piece.") for i in range(6)]
    return save_catalog(root, tracks), root


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_requests_file_errors_name_the_row_and_field(tagged, tmp_path):
    catalog, _ = tagged
    good = {"request": "calm piano", "need": [["piano"]], "avoid": ["loud"]}
    assert read_requests(_write(tmp_path / "ok.jsonl", [good]), catalog) == [
        FitRequest("calm piano", (frozenset({"piano"}),), frozenset({"loud"}))]
    cases = [("{not json", "row 2"), ({"need": [["piano"]]}, "field 'request'"),
             ({"request": "x", "need": []}, "field 'need'"), ({"request": "x", "need": [["piano"]], "avoid": "loud"},
                                                             "field 'avoid'"),
             ({"request": "x", "need": [["polka"]]}, "polka"), ({"request": "x", "need": [["piano"], ["metal"]]},
                                                                "no track")]
    for row, message in cases:
        with pytest.raises(CatalogError, match=message) as err:
            read_requests(_write(tmp_path / "bad.jsonl", [good, row]), catalog)
        assert "bad.jsonl" in str(err.value) and "row 2" in str(err.value)


def test_report_counts_what_each_system_returns(world, tagged):  # noqa: F811
    catalog, root = tagged
    model = make_model(world["tokenizer"], world["n_old"]).eval()
    rec = Recommender(model, world["tokenizer"], catalog, world["store"], GenerationConfig(max_reply_tokens=4),
                      RenderConfig(max_tokens=512))
    requests = [FitRequest("calm piano please", (frozenset({"calm"}),)),
                FitRequest("metal guitar", (frozenset({"metal"}),), frozenset({"calm"}))]
    result = run_fit_check(root, requests, samples=3, recommender=rec, baselines={"bm25": BM25Ranker()},
                           log=lambda *_: None)
    s = result["summary"]
    assert s["requests"] == 2 and s["samples_per_request"] == 3
    by_id = {t.track_id: t for t in catalog}
    for req, row in zip(requests, result["requests"]):
        assert len(row["talkplay_played"]) == 3 and all(t in by_id for t in row["talkplay_played"])
        assert row["talkplay_played_fit"] == pytest.approx(
            sum(req.fits(by_id[t]) for t in row["talkplay_played"]) / 3)
        assert row["bm25_top1_fit"] == req.fits(by_id[row["bm25_top1"]])
        assert row["talkplay_top1_fit"] == req.fits(by_id[row["talkplay_top1"]])
        assert row["random"] == pytest.approx(sum(req.fits(t) for t in catalog) / 6)
    # BM25 reads the words: "metal guitar" matches t3's tags only
    assert result["requests"][1]["bm25_top1"] == "t3" and s["bm25_top1_fit"] == pytest.approx(
        (result["requests"][0]["bm25_top1_fit"] + 1) / 2, abs=1e-4)
    assert s["talkplay_played_fit"] == pytest.approx(
        (result["requests"][0]["talkplay_played_fit"] + result["requests"][1]["talkplay_played_fit"]) / 2, abs=1e-4)
    text = markdown(result)
    assert "TalkPlay, played" in text and "metal guitar" in text


def test_readme_block_reads_the_fit_report(tmp_path):
    from train.evaluation.results import BEGIN, END, update

    report = {"summary": {"requests": 46, "samples_per_request": 5, "talkplay_played_fit": 0.81,
                          "talkplay_top1_fit": 0.8, "talkplay_top5_fit": 0.7, "random_fit": 0.21, "bm25_top1_fit": 0.6,
                          "dense_top1_fit": 0.55, "popularity_top1_fit": 0.2, "played_distinct": 90}}
    (tmp_path / "fit_check.json").write_text(json.dumps(report))
    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN}\n{END}\n")
    update(readme, tmp_path)
    text = readme.read_text()
    assert "fits **81%**" in text and "BM25 60%" in text and "a random track 21%" in text


def test_valid_split_requests_need_what_their_slot_words_need():
    from pathlib import Path

    from train.data import lexicon as lx
    from train.evaluation.fit_check import split_requests

    bundle = Path(__file__).resolve().parents[2] / "catalog" / "demo"
    reqs = split_requests(bundle, "valid", limit=40)
    assert len(reqs) == 40
    for r in reqs:
        slots = [lx.SLOTS[k] for k, _ in lx.find_slot_words(r.text) if not k.startswith("era:")]
        assert slots and all(g in r.need for s in slots for g in s.need)
