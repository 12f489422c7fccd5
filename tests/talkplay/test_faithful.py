"""Faithful replies (talkplay.faithful): an attribute word the playing track's card lacks cannot start a word of
the reply, a word the card has stays possible, and the check counts with the same vocabulary."""

from talkplay.catalog import Track
from talkplay.faithful import AttributeBan, attribute_vocabulary, card_words, on_card, reply_opening
from tests import tiny_lm

WORDS = ["calm piano with soft strings", "loud metal with drums and violin", "Violin and Drums and Metal",
         "a calm piano piece", "drums drums violin violin metal metal piano piano calm calm strings strings",
         "Piano Calm Strings", "fast synths", "synth synth synths"]


def tracks():
    return [Track("a", "Quiet One", "Band A", "CC0-1.0", "credit", "https://example.org/a.ogg",
                  tags=["calm", "piano"], caption="A calm piano piece with soft strings."),
            Track("b", "Loud One", "Band B", "CC0-1.0", "credit", "https://example.org/b.ogg",
                  tags=["metal", "drums", "violin"], caption="Loud metal.")]


def test_absent_attribute_words_are_banned_present_ones_kept():
    tok = tiny_lm.make_tokenizer(WORDS * 20, vocab_size=400)
    a, b = tracks()
    ban = AttributeBan(tok, [a, b])
    assert {"metal", "drums", "violin", "piano", "calm", "trumpet"} <= ban.vocabulary
    banned_a = set(ban.ids(a))

    def first(text):  # the piece that starts the word (a lone space token before it is not banned)
        ids = tok.encode(text, add_special_tokens=False)
        return ids[1] if tok.decode(ids[:1]) == " " else ids[0]

    for word in ("metal", "drums", "violin", "Violin", "Drums"):
        assert first(f" {word}") in banned_a, word
    assert tok.encode(" ", add_special_tokens=False)[0] not in banned_a
    for word in ("piano", "calm", "strings", "Piano"):  # on A's card (tags or caption)
        assert first(f" {word}") not in banned_a, word
    banned_b = set(ban.ids(b))
    assert tok.encode(" metal", add_special_tokens=False)[0] not in banned_b
    assert tok.encode(" piano", add_special_tokens=False)[0] in banned_b


def test_card_words_and_plurals():
    a, _ = tracks()
    words = card_words(a)
    assert {"calm", "piano", "strings", "soft"} <= words
    assert on_card("string", words) and on_card("pianos", words) and not on_card("violin", words)
    assert "instrumental" not in attribute_vocabulary([Track("x", "X", "Y", "CC0-1.0", "c", "u", tags=["instrumental"])])
    assert reply_opening(a) == "“Quiet One” by Band A"


def test_a_content_word_may_not_come_again_right_away():
    """"an ambient ambient piece", "loud, loud drums": the word just said is banned for a few tokens; function
    words and a word said earlier in the reply stay allowed."""
    from talkplay.reply import REPEAT_WINDOW, repeated_words

    content = {10: True, 11: True, 12: False}.get  # 10 " ambient", 11 " loud", 12 " the"
    assert repeated_words([10], content) == [10]
    assert sorted(repeated_words([11, 12, 10], content)) == [10, 11]
    assert repeated_words([12, 12], content) == []
    assert repeated_words([10] + [12] * REPEAT_WINDOW, content) == []


def test_the_opening_states_the_facts_asked_for():
    """"around 120 bpm", "from the 2000s": the opening says the played track's tempo or year, from its card only."""
    t = Track("c", "Battle Music", "Aleksi", "CC0-1.0", "credit", "https://example.org/c.ogg", album="Wesnoth OST",
              year=2006, caption="A fast orchestral piece in C minor with piano, ~135 BPM.")
    assert reply_opening(t, ("tempo",)) == "“Battle Music” by Aleksi (~135 BPM)"
    assert reply_opening(t, ("year", "key")) == "“Battle Music” by Aleksi (C minor, 2006)"
    assert reply_opening(t, ("name",)) == "“Battle Music” by Aleksi (from Wesnoth OST)"
    a, _ = tracks()  # its card states no tempo, key or year: nothing is made up
    assert reply_opening(a, ("tempo", "year", "key")) == "“Quiet One” by Band A"
