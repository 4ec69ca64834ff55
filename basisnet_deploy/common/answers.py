"""Top-1 answers from logits, where a row holding a NaN or infinite value answers nothing.

``np.argmax`` takes a NaN row's first NaN as its answer, so a broken artifact "agrees" with
any reference that answers that class (class 0, for an all-NaN output). Every agreement and
accuracy the tool prints compares answers from here instead.
"""

from __future__ import annotations

import numpy as np

NO_ANSWER = -1  # never a class index, so it matches no label and no reference answer


def answers(logits) -> np.ndarray:
    """Each row's top-1 class (over the last axis), NO_ANSWER where the row is not all finite."""
    logits = np.asarray(logits)
    return np.where(np.isfinite(logits).all(-1), np.argmax(logits, -1), NO_ANSWER)


def same_answers(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row of two answer arrays (from :func:`answers`): both answer, the same class."""
    return (x == y) & (x != NO_ANSWER)


def agreeing(a, b) -> np.ndarray:
    """Per row of two logit arrays: both answer, and answer the same class."""
    return same_answers(answers(a), answers(b))


def same_answer(ref, got) -> bool:
    """Whether two single outputs (any shape, one row of classes) answer the same class."""
    return bool(agreeing(np.reshape(ref, (1, -1)), np.reshape(got, (1, -1)))[0])
