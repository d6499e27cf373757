"""The package's layout: one subpackage per job, a pinned public surface,
no import cycles, and the library never importing the experiment."""

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kd_gan"
SUBPACKAGES = ("models", "training", "distillation", "data", "evaluation", "export", "experiment")
# `evaluate` and `android` are the `python -m kd_gan.<name>` commands the docs have always named.
TOP_LEVEL = {"__init__.py", "errors.py", "_compat.py", "_console.py", "_io.py", "evaluate.py", "android.py", *SUBPACKAGES}
PUBLIC = {
    "kd_gan": [
        "GAN", "Discriminator", "Distiller", "Generator", "compression_ratio", "count_multiply_accumulates",
        "count_parameters", "generator_shapes", "latent_dataset", "load_generator", "pretrained", "propose_widths",
        "prune_generator",
    ],
    "kd_gan.models": [
        "PAPER_RATIOS", "PRECISIONS", "Discriminator", "Generator", "LeakyReLU", "TFLiteGenerator", "check_generator",
        "compression_ratio", "count_multiply_accumulates", "count_parameters", "dcgan_widths", "feature_extractor",
        "float32_copy",
        "freeze", "generate", "generator_layout", "generator_shapes", "latent_size", "load_generator", "policy", "pretrained", "pretrained_path", "prune_generator",
        "generator_parameters", "propose_widths",
        "run_tflite", "with_policy",
    ],
    "kd_gan.training": [
        "GAN", "OBJECTIVES", "SampleImages", "StopOnNonFinite", "adversarial_update", "critic_update",
        "default_optimizer", "discriminator_loss", "generator_loss", "gradient_penalty", "latent_dataset",
        "objective_optimizer",
    ],
    "kd_gan.distillation": [
        "DistillationLoss", "Distiller", "FeatureLoss", "KerasDistillationLoss", "PerceptualLoss", "PixelL1",
        "PixelLaplacianL1", "PixelMSE", "PixelSSIM", "TeacherCache",
    ],
    "kd_gan.data": [
        "DATASETS", "IMAGES", "IMAGE_SHAPES", "IMAGE_SIZES", "center_crop_resize", "from_uint8", "image_grid",
        "image_shape", "load_dataset", "resolve_data_dir", "save_png", "to_uint8",
    ],
    "kd_gan.evaluation": [
        "EvaluationCallback", "ImageStatistics", "InceptionClassifier", "MnistClassifier", "classifier_for",
        "dataset_statistics", "evaluate", "evaluate_generator", "folder_statistics", "generator_statistics", "latent_fidelity",
    ],
    "kd_gan.export": [
        "FORMATS", "INPUT_NAME", "OUTPUT_NAME", "QUANTIZATIONS", "QuantizedView", "SIGNATURE", "TFLiteGenerator",
        "UINT8_SIGNATURE", "VerificationError", "export_generator", "export_saved_model", "export_tflite",
        "kotlin_snippet", "signatures", "verify_tflite",
    ],
    "kd_gan.experiment": [
        "LOSS_CHOICES", "NO_PRESET", "PIXEL", "PRESETS", "STRATEGIES", "Experiment", "ExperimentConfig",
        "build_config", "check_output_dir", "heldout_latents", "kind_losses", "make_strategy", "prepare_output_dir",
        "preset_values", "run",
    ],
}


def modules():
    return sorted(path for path in PACKAGE.rglob("*.py"))


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path):
    """Every kd_gan module `path` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("kd_gan")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kd_gan"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def subpackage(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SUBPACKAGES else None


def test_the_top_level_holds_the_subpackages_and_a_few_modules():
    entries = {path.name for path in PACKAGE.iterdir() if path.name != "__pycache__"}
    assert entries == TOP_LEVEL


def test_every_module_says_its_job_and_stays_under_400_lines():
    for path in modules():
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.relative_to(ROOT)} has no docstring"
        assert len(path.read_text().splitlines()) <= 400, f"{path.relative_to(ROOT)} passes 400 lines"


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_each_public_surface_is_pinned(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name}"


def test_nothing_outside_the_experiment_imports_it():
    offenders = {
        module_name(path): sorted(name for name in imported_modules(path) if subpackage(name) == "experiment")
        for path in modules()
        if subpackage(module_name(path)) != "experiment"
    }
    assert not {module: names for module, names in offenders.items() if names}


def test_subpackages_import_each_other_without_cycles():
    edges = {package: set() for package in SUBPACKAGES}
    for path in modules():
        own = subpackage(module_name(path))
        if own is None:
            continue
        edges[own] |= {subpackage(name) for name in imported_modules(path)} - {None, own}

    def reaches(start, target, seen=()):
        return any(nxt == target or (nxt not in seen and reaches(nxt, target, (*seen, nxt))) for nxt in edges[start])

    cycles = [package for package in SUBPACKAGES if reaches(package, package)]
    assert not cycles, {package: sorted(edges[package]) for package in cycles}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_each_subpackage_imports_on_its_own(package):
    """Imported first in a fresh interpreter, so an import cycle cannot hide behind an earlier import."""
    completed = subprocess.run([sys.executable, "-c", f"import {package}"], cwd=ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_the_console_filter_drops_library_info_lines_only():
    import logging

    from absl import logging as absl_logging

    from kd_gan._console import LibraryInfoFilter

    def record(level, path):
        return logging.LogRecord("absl", level, path, 1, "message", None, None)

    quiet = LibraryInfoFilter()
    tfds_file = "/venv/lib/python3.11/site-packages/tensorflow_datasets/core/reader.py"
    assert not quiet.filter(record(logging.INFO, tfds_file))
    assert quiet.filter(record(logging.WARNING, tfds_file))
    assert quiet.filter(record(logging.INFO, "/work/kd_gan/experiment/progress.py"))
    verbosity = absl_logging.get_verbosity()
    try:
        absl_logging.set_verbosity(absl_logging.DEBUG)
        assert quiet.filter(record(logging.INFO, tfds_file))
    finally:
        absl_logging.set_verbosity(verbosity)


QUIET_CONSOLE = """
import io, logging
from absl import logging as absl_logging
from kd_gan._console import quiet_libraries
quiet_libraries()
stream = io.StringIO()
logging.root.addHandler(logging.StreamHandler(stream))  # A handler an import adds later (as basicConfig does).
absl_logging.set_verbosity(absl_logging.INFO)
logger = absl_logging.get_absl_logger()
for path, message in (("/site-packages/tensorflow_datasets/core/reader.py", "tfds line"), ("/kd_gan/run.py", "own line")):
    logger.handle(logging.LogRecord("absl", logging.INFO, path, 1, message, None, None))
print(repr(stream.getvalue()))
"""


def test_the_console_filter_holds_for_a_handler_added_after_it():
    completed = subprocess.run([sys.executable, "-c", QUIET_CONSOLE], cwd=ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == repr("own line\n")
