"""Word error rate of separated speech against the transcriptions of a mixture.

A REAL-M mixture has two transcriptions and no reference signals. Each
separated stream is transcribed by an ASR model; the streams are assigned to
the transcriptions by the pairing with the fewest word errors in total (the
best permutation of :func:`modules.losses.best_permutation` over minus the
error counts), and the WER is the number of errors over the number of
reference words (``jiwer`` counts substitutions, deletions and insertions).
The unprocessed mixture, the papers' first row, is one transcript scored
against each of the two transcriptions.

Text normalisation (:func:`normalize_text`), applied to references and
hypotheses alike: Unicode NFKC, case folded, the full-width dollar sign that
``data_prep.realm`` writes for ``$`` mapped back, hyphens, slashes and
underscores made spaces, every character that is not a letter, a digit, an
apostrophe or a space removed, apostrophes at the start or end of a word
removed, spaces collapsed. Numbers are not spelled out (REAL-M's sentences are
read text whose numbers, where any, are written as words).
"""

from __future__ import annotations

import re
import unicodedata

import torch

from modules.losses import best_permutation

__all__ = ["assign_transcripts", "corpus_wer", "mixture_errors", "normalize_text", "word_errors"]

_SPACES = re.compile(r"[-‐‑‒–—/_\s]+")
_DROP = re.compile(r"[^\w' ]|_")


def normalize_text(text):
    """Normalised text for WER (see the module docstring).

    Example
    -------
    >>> normalize_text("Don't  SHOUT, well-known 'quotes'! Ｅｘｔｒａ＄")
    "don't shout well known quotes extra"
    """
    text = unicodedata.normalize("NFKC", str(text)).replace("\uff04", "$").casefold()
    text = _DROP.sub("", _SPACES.sub(" ", text))
    words = [w.strip("'") for w in text.split()]
    return " ".join(w for w in words if w)


def word_errors(reference, hypothesis):
    """``(errors, reference words)`` of a hypothesis against a reference, both normalised.

    Example
    -------
    >>> word_errors("the cat sat", "the hat sat down")
    (2, 3)
    >>> word_errors("the cat", "")
    (2, 2)
    """
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        return len(hyp.split()), 0
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, len(ref.split())


def assign_transcripts(hypotheses, references):
    """The stream-to-transcription assignment with the fewest word errors in total.

    Arguments
    ---------
    hypotheses : list of str
        One transcript per separated stream (fewer streams than references
        count as empty transcripts).
    references : list of str

    Returns
    -------
    list of dict
        One per reference, in order: ``stream`` (index of the hypothesis
        assigned, ``None`` for a missing stream), ``errors``, ``words``.

    Example
    -------
    >>> out = assign_transcripts(["good morning to you", "the cat sat"], ["the cat sat", "good morning"])
    >>> [(a["stream"], a["errors"], a["words"]) for a in out]
    [(1, 0, 3), (0, 2, 2)]
    """
    padded = list(hypotheses) + [""] * max(0, len(references) - len(hypotheses))
    table = [[word_errors(ref, hyp) for ref in references] for hyp in padded]  # [n_hyp][n_ref]
    scores = -torch.tensor([[float(e) for e, _ in row] for row in table], dtype=torch.float64)[None]
    perm = best_permutation(scores)[0].tolist()
    return [
        {"stream": i if i < len(hypotheses) else None, "errors": table[i][j][0], "words": table[i][j][1]}
        for j, i in enumerate(perm)
    ]


def mixture_errors(hypothesis, references):
    """The unprocessed mixture: its one transcript against each transcription; ``(errors, words)`` summed.

    Example
    -------
    >>> mixture_errors("the cat good morning", ["the cat", "good morning"])
    (4, 4)
    """
    pairs = [word_errors(ref, hypothesis) for ref in references]
    return sum(e for e, _ in pairs), sum(w for _, w in pairs)


def corpus_wer(errors, words):
    """WER in percent: total errors over total reference words (``nan`` without words).

    Example
    -------
    >>> corpus_wer([1, 2], [10, 10])
    15.0
    """
    total = sum(words)
    return 100.0 * sum(errors) / total if total else float("nan")
