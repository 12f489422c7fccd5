"""Reply faithfulness checks (train.evaluation.conversation_checks): each kind of invention is caught, and faithful
replies — the synthetic training replies, which state only card facts by construction — pass."""

from pathlib import Path

from talkplay.catalog import Catalog, Track
from train.evaluation.conversation_checks import Vocabulary, check_reply

A = Track("a", "Dark Forest", "Mira Holt", "CC0-1.0", "credit", "user", album="Woodland Tales", year=2012,
          tags=("folk", "acoustic", "flute", "slow", "dark"), caption="A slow, dark folk tune in E minor with flute, ~80 BPM.")
B = Track("b", "Neon Highway", "Volt Runner", "CC0-1.0", "credit", "user", album="City Lights", year=2019,
          tags=("electronic", "synth", "fast"), caption="A fast electronic track with synths, ~140 BPM.")
VOCAB = Vocabulary.of(Catalog(Path("mem"), [A, B]))


def test_a_faithful_reply_passes():
    for reply in ("Dark Forest by Mira Holt, from Woodland Tales (2012): a slow, dark folk tune in E minor, ~80 BPM.",
                  "Try this one. Dark Forest by Mira Holt, tagged folk, acoustic, flute."):
        check = check_reply(reply, A, VOCAB)
        assert not check.violates and check.names_track, check


def test_each_invention_is_caught():
    cases = {
        "Dark Forest by Mira Holt, around 120 BPM.": ("wrong_numbers", "120 BPM"),
        "Dark Forest by Mira Holt, in G major.": ("wrong_numbers", "G major"),
        "Dark Forest by Mira Holt, released in 1998.": ("wrong_numbers", "1998"),
        "Dark Forest, a gem from City Lights.": ("wrong_names", "City Lights"),
        "Neon Highway by Volt Runner.": ("wrong_names", "Neon Highway"),
        "Dark Forest by Mira Holt, with lush violin and cello.": ("absent_attributes", "violin"),
        "Dark Forest by Mira Holt: a trumpet solo over synths.": ("absent_attributes", "trumpet"),
    }
    for reply, (kind, what) in cases.items():
        check = check_reply(reply, A, VOCAB)
        assert check.violates and what in getattr(check, kind), (reply, check)


def test_names_inside_titles_and_the_length_cap():
    assert not check_reply("Dark Forest by Mira Holt.", A, VOCAB).absent_attributes  # "Dark" is part of the title
    assert "dark" not in check_reply("Neon Highway by Volt Runner, a dark one.", B, VOCAB).wrong_names
    assert check_reply("Neon Highway by Volt Runner, a dark one.", B, VOCAB).absent_attributes == ["dark"]
    assert not check_reply("Something else entirely.", A, VOCAB).names_track
    assert check_reply("Dark Forest by", A, VOCAB, reply_tokens=96, cap=96).over_length


def test_the_synthetic_training_replies_are_faithful_by_the_checker():
    from talkplay.catalog import load_catalog
    from train.data.conversation_schema import read_conversations
    from train.data.build import conversations_path

    bundle = Path(__file__).resolve().parents[2] / "catalog" / "demo"
    catalog = load_catalog(bundle)
    vocab = Vocabulary.of(catalog)
    checked = 0
    for conv in read_conversations(conversations_path(bundle, "valid"))[:60]:
        m = conv.messages
        for i in range(0, len(m), 3):
            check = check_reply(m[i + 2].content, catalog[m[i + 1].content], vocab)
            assert not check.violates and check.names_track, (m[i + 2].content, check)
            checked += 1
    assert checked > 200
