"""The README and docs/: every relative link resolves, to a file and to a heading in it."""

import glob
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT
from kd_gan import Generator, load_generator

DOCUMENTS = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text):
    """`text` without its fenced code blocks (a bash comment is not a heading, a[i](j) not a link)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def heading_anchors(path):
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    with open(path, encoding="utf-8") as file:
        headings = re.findall(r"^#+ (.+?)\s*$", prose(file.read()), flags=re.MULTILINE)
    anchors, seen = set(), {}
    for heading in headings:
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        anchors.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return anchors


def relative_links(path):
    with open(path, encoding="utf-8") as file:
        text = prose(file.read())
    targets = LINK.findall(text)
    # Every link is one this test reads (none with a title, spaces or another form left unchecked).
    assert len(targets) == text.count("]("), f"{path}: a link of a form this test does not read"
    return [target for target in targets if not re.match(r"^[a-z]+:", target)]  # http:, https:, mailto:


def test_anchors_follow_github(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Export: SavedModel and TFLite\n## The paper's headline on MNIST: 1,696:1\n"
        "## `fit` and callbacks\n## Results\n## Results\n```\n# a bash comment\n```\n"
    )
    assert heading_anchors(str(page)) == {
        "export-savedmodel-and-tflite", "the-papers-headline-on-mnist-16961", "fit-and-callbacks", "results", "results-1",
    }


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: os.path.relpath(path, ROOT))
def test_every_relative_link_resolves(document):
    broken = []
    for target in relative_links(document):
        file_part, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(document), file_part)) if file_part else document
        if not os.path.exists(resolved):
            broken.append(f"{target} (no file {os.path.relpath(resolved, ROOT)})")
        elif anchor and resolved.endswith(".md") and anchor not in heading_anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {os.path.relpath(resolved, ROOT)})")
    assert not broken, f"{os.path.relpath(document, ROOT)}: " + "; ".join(broken)


def test_the_readme_is_a_front_door():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as file:
        text = file.read()
    assert len(text.encode("utf-8")) < 12_000
    first_screen = "\n".join(text.splitlines()[:60])
    # The two commands (main job, tests: what .ci/run calls) and the Python example, on the first screen.
    assert ".venv/bin/python run_experiment.py" in first_screen
    assert '.venv/bin/python -m pytest -q tests' in first_screen
    assert "```python" in first_screen and "export_tflite" in first_screen
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as file:
        assert '.venv/bin/pip install -q -e ".[test]" && .venv/bin/python -m pytest -q tests' in file.read()


def readme_python_example():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as file:
        section = file.read().split("## Distil your own generator\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)
    assert len(blocks) == 1, f"expected one python block in 'Distil your own generator', found {len(blocks)}"
    return blocks[0]


@pytest.mark.parametrize("teacher_kind", ["plain Keras", "kd_gan.Generator"])
def test_the_readme_example_distils_a_generator_and_exports_it(tmp_path, teacher_kind):
    if teacher_kind == "plain Keras":
        teacher = keras.Sequential([
            keras.Input((8,)), keras.layers.Dense(7 * 7 * 4), keras.layers.Reshape((7, 7, 4)),
            keras.layers.Conv2DTranspose(1, 4, strides=4, activation="tanh"),
        ])
    else:
        teacher = Generator(8, (28, 28, 1), depth=4)  # What the experiment saves: a subclassed model.
    teacher.save(tmp_path / "my_generator.keras")
    code = readme_python_example()
    budget = "epochs=20, steps_per_epoch=1000"
    assert code.count(budget) == 1  # The one line the test shortens; the rest runs as printed.
    script = tmp_path / "example.py"
    # Seeded: three steps leave a student near its random start, whose int8
    # file's correlation to it fell below the int8 tolerance (0.98) in about
    # one unseeded run in ten.
    seeded = "import keras\nkeras.utils.set_random_seed(0)\n"
    script.write_text(seeded + code.replace(budget, "epochs=1, steps_per_epoch=3"))
    completed = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "compression" in completed.stdout
    student = load_generator(str(tmp_path / "student.keras"))
    assert student.count_params() > 0 and student(np.zeros((1, 8), "float32")).shape == (1, 28, 28, 1)
    with open(tmp_path / "student_int8.tflite.verification.json") as file:
        assert json.load(file)["passed"]
