"""The paper's experiment: teacher selection, the compression sweep with its
scratch baselines, evaluation, export and the report, resumable in one run
folder. `run_experiment.py` is its command line; nothing outside this
subpackage imports it."""

from kd_gan.experiment.config import LOSS_CHOICES, PIXEL, ExperimentConfig, build_config
from kd_gan.experiment.recipes import kind_losses
from kd_gan.experiment.distribute import STRATEGIES, make_strategy
from kd_gan.experiment.presets import NO_PRESET, PRESETS, preset_values
from kd_gan.experiment.run_folder import check_output_dir, prepare_output_dir
from kd_gan.experiment.runner import Experiment, heldout_latents, run

__all__ = [
    "LOSS_CHOICES",
    "NO_PRESET",
    "PIXEL",
    "PRESETS",
    "STRATEGIES",
    "Experiment",
    "ExperimentConfig",
    "build_config",
    "check_output_dir",
    "heldout_latents",
    "kind_losses",
    "make_strategy",
    "prepare_output_dir",
    "preset_values",
    "run",
]
