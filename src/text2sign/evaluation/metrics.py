"""Scores for generated clips, as pure functions: top-k recognition accuracy, the Frechet distance
of features, and for texts read back the edit distance, the character (or gloss) error rate and
exact-text accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from text2sign.core.units import DEFAULT_LANGUAGE, join
from text2sign.core.units import split as split_units

LONG_WORD = 9  # letters from which a word counts as long (names, compounds)


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Whether each row's label is among its k highest logits (k is capped at the classes):
    bool (N,), so scores of clips taken a batch at a time add up to the same accuracy."""
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"top-k scores need logits (N, C) and labels (N,); got {logits.shape} and "
            f"{labels.shape}"
        )
    k = max(1, min(k, logits.shape[1]))
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]  # (N, k)
    return (top == labels[:, None]).any(axis=1)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest logits (k is capped at the classes)."""
    hits = topk_hits(logits, labels, k)
    return float(hits.mean()) if len(hits) else float("nan")


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (FID, Heusel et al. 2017).

    d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)). The trace of the cross term is
    computed as tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)), a symmetric PSD matrix, so `eigh` suffices
    (no scipy, no complex parts). Like FID it is biased upward for small sets: compare values
    only between sets of equal sizes.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"frechet_distance needs two (N, D) arrays with the same D; got {a.shape} and {b.shape}"
        )
    if len(a) < 2 or len(b) < 2:
        raise ValueError(
            f"frechet_distance needs at least 2 rows per set to fit a covariance; got {len(a)} and "
            f"{len(b)}"
        )
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.cov(a, rowvar=False)  # (D, D)
    cov_b = np.cov(b, rowvar=False)  # (D, D)
    root_a = _sqrtm_psd(cov_a)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a)
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                  - 2.0 * np.trace(cross))
    return max(value, 0.0)  # rounding can push an exact match a hair below zero


def text_units(text: str, units: str, language: str = DEFAULT_LANGUAGE) -> list[str]:
    """Letters (case-folded: fingerspelling has no case; a multi-character letter one unit; a
    run of spaces between words one " " unit, the word boundary) or whitespace-separated
    glosses: `text2sign.core.units.split`."""
    return split_units(text, "chars" if units == "chars" else "glosses", language)


def join_units(units_: list[str], units: str) -> str:
    return join(units_, "chars" if units == "chars" else "glosses")


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two unit sequences (insertions, deletions, substitutions)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def _languages(languages: str | Sequence[str] | None, n: int) -> list[str]:
    """One sign language per text: as given, one for all, or ASL."""
    if languages is None or isinstance(languages, str):
        return [languages or DEFAULT_LANGUAGE] * n
    if len(languages) != n:
        raise ValueError(f"{len(languages)} languages for {n} texts; give one per text")
    return list(languages)


def error_rate(references: list[str], hypotheses: list[str], units: str = "chars",
               languages: str | Sequence[str] | None = None) -> float:
    """Total edit distance over total reference length (CER for chars, WER-like for glosses),
    each text split into its language's units (``languages``: one per text, or one for all)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    codes = _languages(languages, len(references))
    edits = sum(edit_distance(text_units(r, units, c), text_units(h, units, c))
                for r, h, c in zip(references, hypotheses, codes, strict=True))
    length = sum(len(text_units(r, units, c)) for r, c in zip(references, codes, strict=True))
    return edits / max(1, length)


def exact_accuracy(references: list[str], hypotheses: list[str], units: str = "chars",
                   languages: str | Sequence[str] | None = None) -> float:
    if not references:
        return float("nan")
    codes = _languages(languages, len(references))
    return float(np.mean([text_units(r, units, c) == text_units(h, units, c)
                          for r, h, c in zip(references, hypotheses, codes, strict=True)]))
