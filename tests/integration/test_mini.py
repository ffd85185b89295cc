"""The real offline `mini` model (loaded once per session): it must see the picture."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vlmalign.data.images import load_image
from vlmalign.models.base import GenerationRequest
from vlmalign.prompts import Prompt
from vlmalign.sampling import SamplingParams

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# Bundled photos and words that name their main object.
PHOTOS = {
    "pkg:skimage/data/chelsea.png": ("cat",),
    "pkg:skimage/data/coffee.png": ("espresso", "coffee", "cup"),
    "pkg:skimage/data/rocket.jpg": ("rocket", "missile"),
    "pkg:skimage/data/camera.png": ("tripod", "camera", "man", "photographer"),
    "pkg:skimage/data/motorcycle_left.png": ("moped", "motorcycle", "scooter", "motorbike"),
    "pkg:sklearn/datasets/images/china.jpg": ("palace", "temple", "pagoda", "building"),
    "pkg:sklearn/datasets/images/flower.jpg": ("flower", "daisy"),
    "pkg:matplotlib/mpl-data/sample_data/grace_hopper.jpg": (
        "uniform",
        "woman",
        "officer",
        "admiral",
    ),
}


def test_mini_names_the_main_object_of_bundled_photos(mini_model) -> None:
    text = mini_model.render_prompt(
        Prompt((), "What is in the picture?"), mini_model.default_prompt_format
    )
    requests = [GenerationRequest(load_image(ref).image, text, 0) for ref in PHOTOS]
    answers = mini_model.generate(requests, SamplingParams(temperature=0.0))
    named = [
        any(w in a.lower() for w in words)
        for a, words in zip(answers, PHOTOS.values(), strict=True)
    ]
    assert sum(named) >= 6, list(zip(PHOTOS, answers, strict=True))


def test_mini_answer_depends_on_the_image(mini_model) -> None:
    text = mini_model.render_prompt(Prompt((), "What is in the picture?"), "chat")
    params = SamplingParams(temperature=0.0)
    cat, coffee = (
        mini_model.generate([GenerationRequest(load_image(ref).image, text, 0)], params)[0]
        for ref in ("pkg:skimage/data/chelsea.png", "pkg:skimage/data/coffee.png")
    )
    assert cat != coffee


def test_ask_command_prints_one_greedy_answer() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlmalign",
            "ask",
            "pkg:skimage/data/coffee.png",
            "What is in the picture?",
            "--temperature",
            "0",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "espresso" in result.stdout.lower()
