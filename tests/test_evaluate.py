"""What a teacher-forced pass decides about greedy decoding without generating (harness/evaluate.py)."""

import pytest

from harness.data.collate import answer_ids
from harness.evaluate import departure_verdict
from tests.helpers import tiny


@pytest.fixture(scope="module")
def tok():
    return tiny()[1].tokenizer


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_a_departure_that_no_continuation_can_mend_is_a_miss(tok):
    # greedy decoding starts " reddish...": whatever follows, the answer normalises to more than "red"
    assert departure_verdict(tok, _ids(tok, " reddish"), "red") is False
    assert departure_verdict(tok, _ids(tok, " none"), "red") is False


def test_a_departure_that_a_continuation_could_mend_is_left_to_generation(tok):
    # " red" then "." or " " can still normalise to "red"; a first token that starts the answer's text too
    assert departure_verdict(tok, _ids(tok, " red."), "red") is None
    assert departure_verdict(tok, _ids(tok, " red "), "red") is None
    assert departure_verdict(tok, _ids(tok, " r"), "red") is None


def test_eos_ends_the_output_so_the_verdict_is_known(tok):
    eos = tok.eos_token_id
    assert departure_verdict(tok, [eos], "red") is False  # an empty answer
    assert departure_verdict(tok, _ids(tok, " re") + [eos], "red") is False
    # the answer spelled in other tokens, then EOS: a match after normalisation
    spelled = [i for c in " red" for i in _ids(tok, c)]  # one token per character
    assert spelled != answer_ids(tiny()[1], "red")[:-1]
    assert departure_verdict(tok, spelled + [eos], "red") is True


def test_text_beyond_ascii_is_left_to_generation(tok):
    assert departure_verdict(tok, _ids(tok, " é"), "red") is None
