"""The experiment's settings: `ExperimentConfig`, validated on creation, and
`build_config` (a preset's values overridden by explicit ones).

The library takes this frozen object, built by keyword; flags live only in
`run_experiment.py`.
"""

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np

from kd_gan.data import loading as data
from kd_gan.experiment import plan
from kd_gan.experiment import recipes
from kd_gan.training import objectives
from kd_gan.training import optimizers
from kd_gan.export import converters as export_lib
from kd_gan.models import precision as precision_lib
from kd_gan.distillation import teacher_cache as teacher_cache_lib
from kd_gan.evaluation.classifiers import INCEPTION_ENGINES, INCEPTION_PRECISIONS
from kd_gan.experiment.distribute import STRATEGIES
from kd_gan.errors import InputError, check_integer
from kd_gan.experiment.plan import PIXEL, RANDOM, STUDENT_INITS
from kd_gan.models.dcgan import BLOCKS, TRANSPOSED, check_widths, dcgan_widths
from kd_gan.experiment.presets import PRESETS, default_preset, preset_values

BOTH = "both"  # The paper's two students: mse and joint.
NONE = "none"  # No students: the teachers and the scratch GANs only.
LOSS_CHOICES = plan.STUDENT_LOSSES + (BOTH, NONE)

@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Every hyper-parameter of a run; built by keyword, validated on creation.

    Attributes:
        dataset: "mnist", "cifar10", "celeb_a", or "images" (your own folder
            or tar of PNG/JPEG as `data_dir`, at `image_size`).
        loss: student loss: "mse" (the paper's pixel MSE), "joint" (plus a
            GAN loss on real images), "adversarial" (plus a GAN loss against
            a discriminator of the teacher's images), "adversarial_z" (the
            same, the discriminator also given each image's z), several
            joined by "," (a student of each, e.g. "mse,adversarial"),
            "both" (mse and joint), or "none" (no students: the teacher
            candidates and the scratch GANs only).
        output_dir: folder for models, samples and the report.
        data_dir: local data (tfds data dir or original files); None uses
            `$KD_GAN_DATA_DIR`, then tfds' download.
        image_size: 32 or 64 for dataset "images" (centre crop and resize,
            RGB); None for the named data sets.
        teacher_path: distil this generator (`.keras` or SavedModel) instead of
            training teachers.
        teacher_depths: depth scale factors d of the teacher candidates; the
            best by FID (score as tie-break) is distilled.
        student_depths: d of the students and of their scratch baselines.
        student_widths: width profiles of further students and their scratch
            baselines (`Generator(widths=...)`), e.g. `((4, 12, 12, 12),)`.
        student_inits: how each student starts: "random" (the paper's),
            "pruned" (`kd_gan.prune_generator` of the teacher) and/or "refit"
            (pruned, then each layer refit by least squares to the teacher's
            maps: `prune_generator(refit_samples=1024)`); each is a student of
            its own.
        student_start: a `.keras` generator whose weights every student
            starts from, in place of `student_inits` (e.g. a pixel-distilled
            student fine-tuned with another loss): the run's one student
            architecture (`student_depths`, `student_widths`, `student_blocks`)
            must be the file's; scratch GANs start from random weights.
        student_blocks: how the hidden stages of students and their scratch
            GANs upsample (`Generator(block=...)`): "transposed" (the
            paper's) and/or "separable" (about four times the channels at a
            budget; not pruned), each an architecture of its own.
        discriminator_depth: depth d of the discriminators of scratch GANs and
            joint students; None: the student's d, or the last width of its
            profile (the discriminator of the DCGAN whose last map is as wide).
        teacher_discriminator_depth: depth d of the teacher candidates'
            discriminators; None: each teacher's own d.
        latent_dim: size of z.
        batch_size: global images (or latent vectors) per step, split over
            the replicas of the strategy.
        scratch: also train every student size from scratch as an ordinary
            GAN, the baseline distillation must beat (False: students only).
        teacher_epochs: GAN epochs of each teacher candidate.
        student_epochs: epochs of every student and scratch baseline (equal
            budgets, so the comparison is fair).
        steps_per_epoch: steps per epoch; None means one pass over the data
            (rounded down to a multiple of 10, the steps run per execution).
        objective: adversarial objective of teachers, scratch GANs and the
            joint students' GAN term: "ns" (non-saturating, the paper's),
            "hinge" or "wgan-gp" (`kd_gan.training.objectives`; each brings its
            authors' Adam betas and critic steps).
        critic_steps: discriminator steps per generator step; None: the
            objective's (5 for wgan-gp, else 1).
        learning_rate: Adam learning rate of the GANs' generators; None: the
            objective's (2e-4 for ns and hinge, 1e-4 for wgan-gp).
        d_learning_rate: Adam learning rate of every discriminator; None: the
            same as `learning_rate`.
        ema_decay: > 0 averages every generator's weights (teachers, students,
            scratch GANs) with this momentum, e.g. 0.999; the averages are what
            is saved, scored, distilled from and exported (checkpoints keep
            the raw weights beside them). 0: no average.
        student_learning_rate: Adam learning rate of the distilled students
            (1e-3 reached a 2.7x lower MNIST MSE than 2e-4 in 3 epochs).
        student_lr_schedule: "constant", or "cosine": each student's rate
            decays from `student_learning_rate` to 0 over its steps (int8
            fine-tuning keeps a constant tenth).
        mse_weight: weight of the pixel term in the joint and adversarial losses.
        mse_weight_end: with a joint or adversarial loss, the MSE weight
            decays linearly from `mse_weight` to this over each student's
            steps (TinyGAN decays its pixel term); None: constant.
        pixel_loss: the students' pixel term, a key of `recipes.PIXEL_TERMS`:
            "mse" (the paper's), "l1", "ssim_l1" (Zhao et al.'s mix) or "lap1"
            (a Laplacian pyramid's L1, after Bojanowski et al.),
            weighted as the MSE would be (int8 quantization-aware fine-tuning
            keeps the MSE).
        distillation: the student kinds to train for every loss and size:
            "pixel" (the paper's MSE alone), "features" (plus intermediate
            feature maps through learned adapters), "perceptual" (plus a
            frozen discriminator's features), "features+perceptual".
        feature_weight: weight of the feature term (`kd_gan.distillation.losses.FeatureLoss`).
        perceptual_weight: weight of the perceptual term (`kd_gan.distillation.losses.PerceptualLoss`).
        seed: seed of weights, data order and latent draws.
        grid_columns: samples per row in the grids.
        eval_samples: generated images per model for the metrics (FID depends
            on it: compare only at equal counts). None: 10,000 for mnist (a small
            CNN scores them in seconds), 1,000 for cifar10 / celeb_a (the
            Inception runs at ~25 images/s on a 2-core CPU). 0 skips evaluation
            (then only one teacher depth can be given: nothing to select by).
        reference_samples: real images the FID reference is computed from:
            None (the standard protocol) for every image of the reference split
            (MNIST test, CIFAR-10 / CelebA train), cached once; N for a seeded
            random subset of N.
        inception_path: local FID Inception SavedModel; None: `$KD_GAN_INCEPTION`,
            else TF-Hub.
        inception_precision: "auto" (bfloat16 through OpenVINO on a CPU with
            AMX, else float32: `kd_gan.evaluation.inception_engines.choose`),
            "float32" or "bfloat16" (FID within 0.5% of float32's on the
            shared CIFAR-10 reference pair, docs/EVALUATION.md); each pass's
            statistics are kept apart. Not for mnist (scored by the float32
            MNIST network).
        inception_engine: "auto" (OpenVINO on a CPU where installed, else
            TensorFlow), "tensorflow" or "openvino".
        export: formats to export every student to: "tflite", "saved_model"
            (files under `export/`, sizes and errors in results.json).
        quantization: TFLite variants: "none", "float16", "dynamic_int8", "int8".
            Every exported file is timed (batch 1, one LiteRT thread) and, when
            the run scores models, scored itself through LiteRT.
        qat_epochs: 0, or N: each student is also fine-tuned for N epochs under
            int8 rounding (`kd_gan.export.quantization.QuantizedView`, pixel MSE to the
            teacher on fresh z, a tenth of the student learning rate) and
            exported as `<name>_int8_qat.tflite` beside its post-training int8
            file. Needs export "tflite" and quantization "int8".
        teacher_cache: 0 (students run the teacher on fresh z every step), or
            N: students learn from N stored (z, teacher(z)) pairs per pool,
            filled once under `teacher_cache/` and shared by every student
            (`kd_gan.distillation.teacher_cache`).
        cache_refresh_epochs: with a cache, replace the pool by a fresh one
            (new z, one more teacher pass over N pairs) every this many student
            epochs; None keeps one pool throughout.
        cache_storage: "uint8" (pixels at most 1/255 off) or "float16".
        precision: "float32", "bfloat16" (Keras' mixed_bfloat16: fast on CPUs
            with AMX / AVX512-BF16 and on recent GPUs), "float16" (GPUs, with
            loss scaling) or "auto" (bfloat16 where it is fast, else float32:
            `precision.resolve`). Models are saved and exported in float32 whatever
            they trained in. On CPUs, bfloat16 stages whose steps are smaller
            than `precision.BFLOAT16_MIN_STEP_MACS` train in float32 (recorded
            per stage).
        strategy: "default" (one device), "mirrored" (all local GPUs, or all
            logical CPUs when there is no GPU) or "multi_worker"
            (MultiWorkerMirroredStrategy, cluster from `$TF_CONFIG`).
        preset: name of the preset the values came from (recorded only).
        verbose: Keras verbosity (1 progress bar, 2 one line per epoch).
    """

    dataset: str = "mnist"
    loss: str = "mse"
    output_dir: str = "runs/mnist_mse"
    data_dir: Optional[str] = None
    image_size: Optional[int] = None
    teacher_path: Optional[str] = None
    teacher_depths: Tuple[int, ...] = (32,)
    student_depths: Tuple[int, ...] = (2,)
    student_widths: Tuple[Tuple[int, ...], ...] = ()
    student_inits: Tuple[str, ...] = (RANDOM,)
    student_start: Optional[str] = None
    student_blocks: Tuple[str, ...] = (TRANSPOSED,)
    discriminator_depth: Optional[int] = None
    teacher_discriminator_depth: Optional[int] = None
    latent_dim: int = 128
    batch_size: int = 64
    scratch: bool = True
    teacher_epochs: int = 3
    student_epochs: int = 3
    steps_per_epoch: Optional[int] = None
    objective: str = objectives.NON_SATURATING
    critic_steps: Optional[int] = None
    learning_rate: Optional[float] = None
    d_learning_rate: Optional[float] = None
    ema_decay: float = 0.0
    student_learning_rate: float = 1e-3
    student_lr_schedule: str = recipes.CONSTANT
    mse_weight: float = 1.0
    mse_weight_end: Optional[float] = None
    pixel_loss: str = recipes.PIXEL_MSE
    distillation: Tuple[str, ...] = (PIXEL,)
    feature_weight: float = 0.1
    perceptual_weight: float = 0.1
    seed: int = 0
    grid_columns: int = 8
    eval_samples: Optional[int] = None
    reference_samples: Optional[int] = None
    inception_path: Optional[str] = None
    inception_precision: str = "auto"
    inception_engine: str = "auto"
    export: Tuple[str, ...] = ()
    quantization: Tuple[str, ...] = ("none",)
    qat_epochs: int = 0
    teacher_cache: int = 0
    cache_refresh_epochs: Optional[int] = None
    cache_storage: str = "uint8"
    precision: str = "float32"
    strategy: str = "default"
    preset: Optional[str] = None
    verbose: int = 2

    def __post_init__(self):
        if self.dataset not in data.DATASETS:
            raise InputError(f"Unknown dataset {self.dataset!r}; choose one of {data.DATASETS}.")
        data.image_shape(self.dataset, self.image_size)  # "images" needs 32 or 64; the others their own size.
        if self.teacher_path and self.teacher_path.endswith(".tflite"):
            raise InputError(
                f"teacher_path={self.teacher_path!r}: a .tflite generator can be scored "
                "(python -m kd_gan.evaluate --generator=...) but not distilled; give its .keras file or SavedModel."
            )
        if self.dataset == data.IMAGES and not self.data_dir:
            raise InputError("dataset='images' trains on your folder or tar of images: pass it as data_dir (--data_dir).")
        if not self.losses and not self.scratch and self.teacher_path:
            raise InputError(
                f"loss={self.loss!r} trains no students, scratch=False no scratch GANs, and teacher_path="
                f"{self.teacher_path!r} no teacher: nothing to train. Name a student loss or keep the scratch GANs."
            )
        _check_choice("objective", self.objective, objectives.OBJECTIVES)
        # Unset optimizer settings take the objective's; config.json records the values used.
        settings = objectives.OBJECTIVE_DEFAULTS[self.objective]
        if self.critic_steps is None:
            object.__setattr__(self, "critic_steps", settings["critic_steps"])
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", settings["learning_rate"])
        if self.d_learning_rate is None:
            object.__setattr__(self, "d_learning_rate", self.learning_rate)
        _check_at_least("critic_steps", self.critic_steps, 1)
        optimizers.check_ema_decay(self.ema_decay)
        _check_at_least("teacher_cache", self.teacher_cache, 0)
        if self.cache_refresh_epochs is not None:
            _check_at_least("cache_refresh_epochs", self.cache_refresh_epochs, 1)
            if not self.teacher_cache:
                raise InputError(
                    f"cache_refresh_epochs={self.cache_refresh_epochs} refreshes the teacher cache: set "
                    "teacher_cache to its size (pairs per pool)."
                )
        _check_choice("cache_storage", self.cache_storage, teacher_cache_lib.STORAGES)
        _check_choice("pixel_loss", self.pixel_loss, recipes.PIXEL_TERMS)
        _check_choice("student_lr_schedule", self.student_lr_schedule, recipes.LR_SCHEDULES)
        _check_choice("inception_precision", self.inception_precision, INCEPTION_PRECISIONS)
        _check_choice("inception_engine", self.inception_engine, INCEPTION_ENGINES)
        if self.dataset == "mnist" and self.inception_precision not in ("auto", "float32"):
            raise InputError(f"inception_precision={self.inception_precision!r} is for the Inception; MNIST is scored by the float32 MNIST network.")
        _check_choice("precision", self.precision, precision_lib.TRAINING_PRECISIONS)
        _check_choice("strategy", self.strategy, STRATEGIES)
        if self.preset is not None and self.preset not in PRESETS:
            raise InputError(f"Unknown preset {self.preset!r}; choose one of {tuple(PRESETS)}.")
        for name in ("teacher_depths", "student_depths"):
            values = getattr(self, name)
            empty_allowed = name == "student_depths" and self.student_widths
            if isinstance(values, str) or not (values or empty_allowed) or len(set(values)) != len(values):
                raise InputError(f"{name} must be a non-empty tuple of distinct integers. Received: {name}={values!r}")
            for value in values:
                _check_at_least(name, value, 1)
        self._check_student_architectures()
        for name in ("latent_dim", "batch_size", "grid_columns"):
            _check_at_least(name, getattr(self, name), 1)
        for name in ("teacher_epochs", "student_epochs"):
            _check_at_least(name, getattr(self, name), 0)
        if self.steps_per_epoch is not None:
            _check_at_least("steps_per_epoch", self.steps_per_epoch, 1)
        if self.eval_samples is not None:
            _check_at_least("eval_samples", self.eval_samples, 0)
        if self.reference_samples is not None:
            _check_at_least("reference_samples", self.reference_samples, 2)
        if self.eval_samples == 0 and len(self.teacher_depths) > 1 and not self.teacher_path:
            raise InputError(f"Choosing among teacher_depths={self.teacher_depths} needs their FID: eval_samples must be > 0 (or give one teacher depth).")
        for name in ("learning_rate", "d_learning_rate", "student_learning_rate"):
            if not 0 < getattr(self, name) < math.inf:
                raise InputError(f"{name} must be a finite number > 0. Received: {name}={getattr(self, name)}")
        for name in ("mse_weight", "feature_weight", "perceptual_weight"):
            if not 0 <= getattr(self, name) < math.inf:
                raise InputError(f"{name} must be a finite number >= 0. Received: {name}={getattr(self, name)}")
        if self.mse_weight_end is not None and not 0 <= self.mse_weight_end < math.inf:
            raise InputError(f"mse_weight_end must be a finite number >= 0 or None. Received: mse_weight_end={self.mse_weight_end}")
        if self.mse_weight_end is not None and plan.MSE in self.losses and len(self.losses) == 1:
            raise InputError(
                f"mse_weight_end={self.mse_weight_end} decays the MSE weight beside an adversarial term; "
                f"loss={self.loss!r} has none (add joint, adversarial or adversarial_z)."
            )
        object.__setattr__(self, "distillation", plan.check_distillation(self.distillation))
        for name, allowed in (("export", export_lib.FORMATS), ("quantization", export_lib.QUANTIZATIONS)):
            values = getattr(self, name)
            if isinstance(values, str) or any(v not in allowed for v in values):
                raise InputError(f"{name} must be a tuple of values from {allowed}. Received: {name}={values!r}")
        object.__setattr__(self, "qat_epochs", check_integer("qat_epochs", self.qat_epochs, 0))
        if self.qat_epochs and ("tflite" not in self.export or "int8" not in self.quantization):
            raise InputError(
                f"qat_epochs={self.qat_epochs} fine-tunes students for their int8 .tflite files: add export "
                f"'tflite' and quantization 'int8' (got export={self.export!r}, quantization={self.quantization!r})."
            )
        if not self.output_dir:
            raise InputError("output_dir must be a non-empty path.")

    def _check_student_architectures(self):
        size = data.image_shape(self.dataset, self.image_size)[0]
        if isinstance(self.student_widths, (str, bytes)):
            raise InputError(f"student_widths must be a tuple of width profiles. Received: {self.student_widths!r}")
        widths = tuple(check_widths(profile, size) for profile in self.student_widths)
        if len(set(widths)) != len(widths):
            raise InputError(f"student_widths lists a profile twice: {self.student_widths!r}.")
        object.__setattr__(self, "student_widths", widths)
        inits = self.student_inits
        if isinstance(inits, str) or not inits or len(set(inits)) != len(inits) or not set(inits) <= set(STUDENT_INITS):
            raise InputError(f"student_inits must be a non-empty tuple of distinct values from {STUDENT_INITS}. Received: {inits!r}")
        for name in ("discriminator_depth", "teacher_discriminator_depth"):
            if getattr(self, name) is not None:
                _check_at_least(name, getattr(self, name), 1)
        pruning = [init for init in inits if init != RANDOM]
        blocks = self.student_blocks
        if isinstance(blocks, str) or not blocks or len(set(blocks)) != len(blocks) or not set(blocks) <= set(BLOCKS):
            raise InputError(f"student_blocks must be a non-empty tuple of distinct values from {BLOCKS}. Received: {blocks!r}")
        if set(blocks) - {TRANSPOSED} and (pruning or self.qat_epochs):
            setting = f"student_inits {pruning[0]!r}" if pruning else f"qat_epochs={self.qat_epochs}"
            raise InputError(
                f"student_blocks {blocks!r}: separable students are not pruned and have no "
                f"quantization-aware fine-tuning; {setting} needs transposed blocks. Run them separately."
            )
        if self.student_start is not None:
            plan.check_student_start(self, widths, blocks)
        if pruning and not self.teacher_path:
            # A trained teacher's widths are known now; a given one's are checked when it is loaded.
            narrowest = min(self.teacher_depths)
            for profile in [dcgan_widths(d, size) for d in self.student_depths] + list(widths):
                if any(w > t for w, t in zip(profile, dcgan_widths(narrowest, size))):
                    raise InputError(
                        f"student_inits {pruning[0]!r} prunes the teacher, and a student of widths {profile} is wider "
                        f"than the d={narrowest} teacher's {dcgan_widths(narrowest, size)} somewhere."
                    )

    @property
    def losses(self):
        """The student losses this run trains, in the order given."""
        if self.loss == BOTH:
            return (plan.MSE, plan.JOINT)
        if self.loss == NONE:
            return ()
        losses = tuple(str(self.loss).split(","))
        if not set(losses) <= set(plan.STUDENT_LOSSES) or len(set(losses)) != len(losses):
            raise InputError(
                f"Unknown loss {self.loss!r}; choose one of {LOSS_CHOICES}, or several of {plan.STUDENT_LOSSES} "
                "joined by ',' (each once), e.g. 'mse,adversarial'."
            )
        return losses


def build_config(preset=None, **values):
    """An `ExperimentConfig` from `preset`'s values, overridden by `values`.

    `preset=None` takes the data set's default (`presets.DEFAULT_PRESETS`:
    the `cpu` preset for cifar10 and celeb_a, none for mnist); "none" takes no
    preset.
    """
    dataset = values.get("dataset", ExperimentConfig.dataset)
    preset = default_preset(preset, dataset)
    merged = preset_values(preset, dataset) if preset else {}
    merged.update(values)
    return ExperimentConfig(**merged)


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise InputError(f"Unknown {name} {value!r}; choose one of {tuple(allowed)}.")


def _check_at_least(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be integers >= {minimum}. Received: {name} with {value!r}")
