"""Music-token vocabulary: strings, parsing, round trips, reserved codes, injection neutralization."""

import pytest

from talkplay.tokens import (
    END_OF_MUSIC,
    START_OF_MUSIC,
    ModalitySpec,
    MusicVocab,
    contains_music_markup,
    iter_music_tokens,
    neutralize_music_markup,
    parse_token,
)


@pytest.fixture
def flat():
    return MusicVocab([ModalitySpec("playlist", 1, 4), ModalitySpec("lyrics", 1, 3, reserved=1),
                       ModalitySpec("audio", 1, 5)])


@pytest.fixture
def residual():
    return MusicVocab([ModalitySpec("semantic", 2, 3), ModalitySpec("audio", 3, 2)])


def test_token_strings_follow_the_format(flat, residual):
    assert flat.tokens_for((3, 0, 4)) == ["<|playlist-3|>", "<|lyrics-0|>", "<|audio-4|>"]
    assert residual.tokens_for((2, 0, 1, 1, 0)) == ["<|semantic1-2|>", "<|semantic2-0|>", "<|audio1-1|>",
                                                    "<|audio2-1|>", "<|audio3-0|>"]
    assert [p.label for p in residual.positions] == ["semantic1", "semantic2", "audio1", "audio2", "audio3"]
    assert flat.span((0, 1, 2)) == START_OF_MUSIC + "<|playlist-0|><|lyrics-1|><|audio-2|>" + END_OF_MUSIC


def test_every_token_parses_back_exactly(flat, residual):
    for vocab in (flat, residual):
        tokens = vocab.all_tokens()
        assert len(tokens) == len(set(tokens)) == sum(vocab.size(i) for i in range(len(vocab)))
        for tok in tokens:
            ref = vocab.parse(tok)
            assert vocab.token(ref.position, ref.code) == tok
            modality, level, code = parse_token(tok)
            assert (modality, level, code) == (ref.position.modality, ref.position.level, ref.code)


def test_round_trip_all_tuples(residual):
    import itertools

    for codes in itertools.product(*(range(residual.size(i)) for i in range(len(residual)))):
        assert residual.codes_for(residual.tokens_for(codes)) == codes


def test_errors(flat):
    with pytest.raises(ValueError, match="out of range"):
        flat.tokens_for((4, 0, 0))
    with pytest.raises(ValueError, match="not valid at position"):
        flat.codes_for(["<|audio-1|>", "<|lyrics-0|>", "<|audio-1|>"])
    with pytest.raises(ValueError):
        flat.parse("<|audio-99|>")
    with pytest.raises(ValueError):
        parse_token("<|Audio-1|>")
    with pytest.raises(ValueError):
        ModalitySpec("audio2", 1, 4)  # a trailing digit would read as a level
    with pytest.raises(ValueError):
        MusicVocab([ModalitySpec("a"), ModalitySpec("a")])


def test_json_round_trip(residual):
    assert MusicVocab.from_json(residual.to_json()) == residual
    assert residual.special_tokens()[:2] == [START_OF_MUSIC, END_OF_MUSIC]


def test_user_text_markup_is_neutralized():
    text = "play <|audio-5|> then <start_of_music><|playlist-1|><end_of_music> please"
    assert contains_music_markup(text)
    assert iter_music_tokens(text) == ["<|audio-5|>", "<start_of_music>", "<|playlist-1|>", "<end_of_music>"]
    safe = neutralize_music_markup(text)
    assert not contains_music_markup(safe) and "audio-5" in safe and "play" in safe
