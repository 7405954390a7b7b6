"""What the verifier is trained and calibrated on: implied pairs and the default threshold."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embeddings.verifier import Calibration, fit_logistic, pick_threshold, wilson_lower_bound
from tools.pairs import Pair, closure_pairs, select, sharing_no_question


def test_closure_adds_duplicates_of_duplicates_and_negatives_across_groups_only():
    pairs = [
        Pair("a1", "a2", 1),
        Pair("a2", "a3", 1),
        Pair("a3", "a4", 1),
        Pair("b1", "b2", 1),
        Pair("a1", "b1", 0),
        Pair("a3", "a1", 0),  # contradicts the group it sits in: implies nothing
    ]
    implied = {
        (frozenset((p.text_a, p.text_b)), p.label)
        for p in closure_pairs(pairs, random.Random(0), 20)
    }
    group_a, group_b = ("a1", "a2", "a3", "a4"), ("b1", "b2")
    assert {pair for pair, label in implied if label == 1} == {
        frozenset(("a1", "a4")),
        frozenset(("a2", "a4")),
    }
    assert {pair for pair, label in implied if label == 0} == {
        frozenset((a, b)) for a in group_a for b in group_b
    } - {frozenset(("a1", "b1"))}


def test_a_weighted_row_counts_as_that_many_copies_of_it():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(60, 2))
    labels = (features[:, 0] + rng.normal(size=60) > 0).astype(float)
    weights = rng.integers(1, 4, size=60).astype(float)
    copied = np.repeat(np.arange(60), weights.astype(int))
    weighted = fit_logistic(features, labels, weights)
    assert np.allclose(weighted, fit_logistic(features[copied], labels[copied]))
    assert not np.allclose(weighted, fit_logistic(features, labels))


def test_wilson_lower_bound_matches_the_closed_form():
    bounds = wilson_lower_bound(np.array([0.9, 1.0, 669 / 735]), np.array([100, 10, 735]), 1.645)
    # (x + z^2/2) / (n + z^2) - z sqrt(n) / (n + z^2) sqrt(p(1 - p) + z^2 / 4n), by hand.
    assert bounds == pytest.approx([0.83964, 0.78703, 0.89132], abs=1e-5)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.booleans(), st.booleans()), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.8, 0.9]),
)
def test_the_threshold_is_the_lowest_whose_served_precision_is_confidently_on_target(rows, target):
    scores = np.array([s / 30 for s, _, _ in rows])
    labels = np.array([float(label) for _, label, _ in rows])
    served = np.array([keep for _, _, keep in rows])
    z = 1.645

    def confident(threshold: float) -> bool:
        admitted = (scores >= threshold) & served
        correct = (labels * admitted).sum()
        if correct == 0:
            return False
        share = correct / admitted.sum()
        return bool(
            wilson_lower_bound(np.array([share]), np.array([admitted.sum()]), z)[0] >= target
        )

    threshold, _, lower_bound, recall = pick_threshold(scores, labels, served, target, z)
    passing = [t for t in sorted(set(scores)) if confident(t)]
    if passing:
        assert threshold == passing[0]
        assert lower_bound >= target
        admitted = (scores >= threshold) & served
        assert recall == (labels * admitted).sum() / labels.sum()
    else:
        assert (threshold, recall) == (1.0, 0.0)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0.01, 0.99),
    st.floats(-1.0, 1.0),
    st.floats(0.1, 2.0),
    st.floats(0.5, 10.0),
    st.floats(-8.0, 0.0),
    st.floats(-5.0, 5.0),
    st.floats(-6.0, 6.0),
    st.floats(-3.0, 3.0),
)
def test_under_the_lowest_cosine_no_logit_up_to_the_highest_reaches_the_threshold(
    threshold, cosine, logit_weight, cosine_weight, bias, max_logit, overlap_weight, swapped_weight
):
    scale = Calibration(
        logit_weight, cosine_weight, bias, threshold, max_logit, overlap_weight, swapped_weight
    )
    lowest = scale.lowest_cosine(threshold)
    logits = np.repeat(np.linspace(-10.0, max_logit, 50), 22)
    overlaps = np.tile(np.linspace(0.0, 1.0, 11), 100)  # a share of words: 0 to 1
    swapped = np.tile(np.repeat([0.0, 1.0], 11), 50)  # a word swapped or not
    best = scale.score(logits, np.full(1100, cosine), overlaps, swapped).max()
    if cosine < lowest - 1e-9:
        assert best < threshold
    elif cosine > lowest + 1e-9:
        assert best > threshold


def test_the_lowest_cosine_skips_nothing_without_a_bound_or_a_bar():
    assert Calibration(0.6, 5.7, -4.5, 0.86).lowest_cosine(0.86) == -np.inf  # no max_logit
    assert Calibration(0.6, 5.7, -4.5, 0.86, 3.9).lowest_cosine(0.0) == -np.inf
    assert Calibration(0.6, 5.7, -4.5, 0.86, 3.9).lowest_cosine(1.0) == np.inf


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-10.0, 10.0),
    st.floats(-1.0, 1.0),
    st.floats(0.0, 1.0),
    st.booleans(),
    st.floats(0.1, 2.0),
    st.floats(-3.0, 3.0),
)
def test_another_language_is_scored_on_the_logit_alone(
    logit, cosine, overlap, swapped, other_weight, other_bias
):
    """In es/fr/de/pt/it the English embedder's cosine (and the overlap, a swapped word)
    do not move the score: it is the other languages' logistic of the logit. English is
    scored as before, and no cosine is too low for another language to be verified."""
    scale = Calibration(0.6, 5.7, -4.5, 0.86, 3.9, -1.2, -0.5, -0.05, other_weight, other_bias)
    english_only = Calibration(0.6, 5.7, -4.5, 0.86, 3.9, -1.2, -0.5, -0.05)
    args = (np.array([logit]), np.array([cosine]), overlap, float(swapped))
    other = scale.score(*args, english=False)[0]
    assert other == pytest.approx(1 / (1 + np.exp(-(other_weight * logit + other_bias))))
    assert scale.score(*args, english=True)[0] == english_only.score(*args)[0]
    assert scale.lowest_cosine(0.86, english=False) == -np.inf
    assert scale.lowest_cosine(0.86, english=True) == english_only.lowest_cosine(0.86)


def test_the_eval_curve_holds_another_language_to_its_margin():
    """The probe at threshold 0 reads a score; the gateway holds an es/fr/de/pt/it text to
    the threshold plus its margin, and so does the curve."""
    from tools.evaluate import PairResult, in_english, report

    calibration = Calibration(0.6, 5.7, -4.5, 0.86, other_language_margin=0.1)
    assert calibration.margin(in_english("How do I learn Python fast?")) == 0.0
    assert calibration.margin(in_english("¿Cómo aprendo Python rápido?")) == 0.1
    results = [PairResult(1, True, 0.85, None, 0.0), PairResult(0, False, 0.85, None, 0.1)]
    curve = {row["threshold"]: row for row in report("t", results, np.zeros(2), 0.9)["curve"]}
    assert (curve[0.8]["hits"], curve[0.8]["precision"]) == (1, 1.0)
    assert (curve[0.7]["hits"], curve[0.7]["precision"]) == (2, 0.5)


def test_a_set_that_names_its_split_and_kinds_is_selected_and_reported_by_them(tmp_path):
    from tools.evaluate import PairResult, by_kind
    from tools.pairs import load_pairs, select

    rows = [
        {"text_a": "a", "text_b": "b", "label": 1, "kind": "coding", "split": "tune"},
        {"text_a": "c", "text_b": "d", "label": 0, "kind": "instruction", "split": "report"},
        {"text_a": "e", "text_b": "f", "label": 1, "kind": "instruction", "split": "report"},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = select(load_pairs(path), "report")
    assert [(p.text_a, p.kind) for p in report] == [("c", "instruction"), ("e", "instruction")]
    assert [p.text_a for p in select(load_pairs(path), "tune")] == ["a"]
    results = [
        PairResult(0, True, 0.9, "instruction"),
        PairResult(1, True, 0.95, "instruction"),
        PairResult(1, False, None, "coding"),
    ]
    figures = by_kind(results)
    assert figures["instruction"]["precision"] == 0.5
    assert figures["instruction"]["false_hit_rate"] == 1.0
    assert figures["coding"] == {
        "pairs": 1,
        "duplicates": 1,
        "precision": 1.0,
        "recall": 0.0,
        "hits": 0,
        "false_hits": 0,
        "false_hit_rate": 0.0,
    }


def test_the_prompt_training_pairs_share_no_topic_or_text_with_the_measured_ones():
    """No prompt set shares a topic or a text with another: what the verifier is trained on
    (the training and probe pairs, and since session 36 the unseen, fresh tune and language
    pairs) never reaches the pairs it is calibrated or reported on."""
    data = Path(__file__).resolve().parent.parent / "bench" / "data"

    def rows(name: str) -> list[dict]:
        return [json.loads(line) for line in (data / name).open(encoding="utf-8")]

    def texts(pairs: list[dict]) -> set[str]:
        return {" ".join(p[side].lower().split()) for p in pairs for side in ("text_a", "text_b")}

    train = rows("prompt_train_pairs.jsonl") + rows("prompt_probe_pairs.jsonl")
    assert len(train) >= 7000 and {row["split"] for row in train} == {"train"}
    # Each set written later shares nothing with those before it.
    written = [
        train,
        rows("prompt_pairs.jsonl"),
        rows("prompt_unseen_pairs.jsonl"),
        rows("prompt_fresh_pairs.jsonl"),
        rows("prompt_check_pairs.jsonl"),
        rows("prompt_margin_pairs.jsonl"),
        rows("prompt_language_pairs.jsonl"),
    ]
    for i, later in enumerate(written[1:], 1):
        for earlier in written[:i]:
            assert not {row["topic"] for row in earlier} & {row["topic"] for row in later}
            assert not texts(earlier) & texts(later)
    # The fresh set's tune split is trained on, its report split reported on.
    fresh = rows("prompt_fresh_pairs.jsonl")
    tune, report = ([row for row in fresh if row["split"] == s] for s in ("tune", "report"))
    assert tune and report and not texts(tune) & texts(report)


def test_extra_training_pairs_share_no_question_with_what_is_measured(tmp_path):
    """--train-extra trains on extra pairs past those calibrated on, and on none that
    shares a question (case and spacing aside) with a calibrated or held-out pair."""
    from scripts.train_verifier import extra_training_pairs

    dev = [Pair(f"q{i} a", f"q{i} b", i % 2) for i in range(400)]
    measured = select(dev, "calib") + select(dev, "heldout")
    extra = [
        Pair("x1", "x2", 1),  # calibrated on (--extra-limit 1)
        Pair("X1 ", "fresh one", 1),  # shares a calibrated extra question
        Pair(measured[0].text_a.upper(), "fresh two", 0),  # shares a measured question
        Pair("fresh three", "fresh four", 1),
    ]
    path = tmp_path / "extra.jsonl"
    path.write_text("".join(json.dumps(asdict(p)) + "\n" for p in extra))
    args = type("Args", (), {"extra_pairs": str(path), "extra_limit": 1})()
    assert extra_training_pairs(dev, args) == [Pair("fresh three", "fresh four", 1)]
    assert sharing_no_question(extra, extra[:1]) == extra[2:]
