"""The run plan: every stage of a run as a typed, frozen record, enumerated in
one place (`plan_stages`) and read by the runner, the time estimate, shipping
and the report.

A stage's name and folder are derived from its record, never parsed back:
`teachers/d32`, `students/mse_d2`, `students/joint+features_d1_qat2`,
`scratch/d1` (the names runs have always been written under, so older run
folders are found and resumed).
"""

import dataclasses
from typing import Optional, Tuple

from kd_gan.errors import InputError
from kd_gan.experiment.recipes import PIXEL_MSE, PIXEL_TERMS
from kd_gan.models.dcgan import BLOCKS, TRANSPOSED

TEACHER, STUDENT, SCRATCH = "teacher", "student", "scratch"
ROLES = (TEACHER, STUDENT, SCRATCH)
PIXEL = "pixel"  # The paper's student: pixel MSE to the teacher, nothing else distilled.
FEATURES, PERCEPTUAL = "features", "perceptual"
DISTILLATION_TERMS = (FEATURES, PERCEPTUAL)  # What a student kind may add to the pixel MSE.
MSE, JOINT, ADVERSARIAL = "mse", "joint", "adversarial"
# Adversarial distillation with a discriminator conditioned on z (`Discriminator(latent_dim=...)`).
ADVERSARIAL_Z = "adversarial_z"
STUDENT_LOSSES = (MSE, JOINT, ADVERSARIAL, ADVERSARIAL_Z)
RANDOM, PRUNED, REFIT, STARTED = "random", "pruned", "refit", "started"
# How a student starts (the sweep's choices): random weights, the pruned teacher, or the pruned teacher refit layer by layer.
STUDENT_INITS = (RANDOM, PRUNED, REFIT)
# Or from the weights of a generator file (`student_start`), instead of the sweep.
_INITS = STUDENT_INITS + (STARTED,)
REFIT_SAMPLES = 1024  # Latent vectors whose teacher maps the refit reproduces (`prune_generator`).
_INIT_SUFFIXES = {RANDOM: "", PRUNED: "_pruned", REFIT: "_refit", STARTED: "_started"}
_INIT_LABELS = {RANDOM: "", PRUNED: ", pruned start", REFIT: ", pruned and refit start", STARTED: ", started from a given generator"}
_FOLDERS = {TEACHER: "teachers", STUDENT: "students", SCRATCH: "scratch"}
_LOSS_LABELS = {MSE: "MSE", JOINT: "joint", ADVERSARIAL: "adversarial", ADVERSARIAL_Z: "adversarial, z-conditioned"}
_ROLE_LABELS = {TEACHER: "teacher", SCRATCH: "scratch GAN"}


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One stage of a run.

    Attributes:
        role: "teacher" (a candidate), "student" (distilled) or "scratch"
            (the student's generator trained as an ordinary GAN).
        depth: depth scale factor d of its generator (None with `widths`).
        epochs: training epochs.
        loss: a student's loss, one of `STUDENT_LOSSES`; None otherwise.
        kind: what a student distils: "pixel" (the paper's), or terms added
            to it, e.g. "features+perceptual".
        fine_tune_epochs: for a further stage of a student (quantization-aware
            fine-tuning under int8 rounding), its epochs; 0 for a stage of its own.
        widths: instead of `depth`, the generator's width profile.
        init: how a student starts: "random", "pruned" (the teacher pruned
            to its widths), "refit" (pruned, then each layer refit by least
            squares to the teacher's maps) or "started" (the weights of the
            run's `student_start` generator).
        discriminator_depth: d of the discriminator beside it (adversarial
            stages); None: its own d, or the last width of its profile.
        block: how its generator's hidden stages upsample (`Generator(block=...)`):
            "transposed" (the paper's) or "separable" (students not pruned,
            without quantization-aware fine-tuning).
        pixel_loss: the students' pixel term (a key of `recipes.PIXEL_TERMS`); it
            names a pixel-only student's label ("student (L1)"), not its
            name or folder ("students/mse_d2" whatever the term).
    """

    role: str
    depth: Optional[int]
    epochs: int
    loss: Optional[str] = None
    kind: str = PIXEL
    fine_tune_epochs: int = 0
    widths: Optional[Tuple[int, ...]] = None
    init: str = RANDOM
    discriminator_depth: Optional[int] = None
    block: str = TRANSPOSED
    pixel_loss: str = PIXEL_MSE

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"Unknown stage role {self.role!r}; choose one of {ROLES}.")
        if (self.role == STUDENT) != (self.loss is not None):
            raise ValueError(f"A loss is given to students only; got role {self.role!r} with loss {self.loss!r}.")
        if (self.depth is None) == (self.widths is None):
            raise ValueError(f"A stage has a depth or widths; got depth={self.depth!r}, widths={self.widths!r}.")
        if self.init not in _INITS or (self.init != RANDOM and self.role != STUDENT):
            raise ValueError(f"init {self.init!r}: one of {_INITS}, other than 'random' for students only.")
        if self.block not in BLOCKS or (self.block != TRANSPOSED and (self.pruned or self.fine_tuning)):
            raise ValueError(
                f"block {self.block!r} with init={self.init!r}, fine_tune_epochs={self.fine_tune_epochs}: "
                f"one of {BLOCKS}; only 'transposed' is pruned or fine-tuned."
            )
        if self.pixel_loss not in PIXEL_TERMS:
            raise ValueError(f"pixel_loss {self.pixel_loss!r}: one of {tuple(PIXEL_TERMS)}.")
        if self.discriminator_depth is None:
            object.__setattr__(self, "discriminator_depth", self.depth or self.widths[-1])

    # What it is ---------------------------------------------------------

    @property
    def terms(self) -> Tuple[str, ...]:
        """What a student distils besides the pixel MSE (() for the paper's students)."""
        return () if self.kind == PIXEL else tuple(self.kind.split("+"))

    @property
    def distils_features(self):
        """Reads the teacher's feature maps each step (no cached teacher output replaces them)."""
        return FEATURES in self.terms

    @property
    def perceptual(self):
        """Reads a discriminator's features: the teacher's, or its own when joint."""
        return PERCEPTUAL in self.terms

    @property
    def joint(self):
        """A student that reads real images (the joint loss)."""
        return self.loss == JOINT

    @property
    def discriminated(self):
        """A student with a discriminator of its own: joint (on real images) or
        adversarial (on the teacher's)."""
        return self.loss in (JOINT, ADVERSARIAL, ADVERSARIAL_Z)

    @property
    def conditioned(self):
        """Its discriminator also sees the z of each image (adversarial_z)."""
        return self.loss == ADVERSARIAL_Z

    @property
    def distiller_loss(self):
        """The `Distiller`'s loss preset of a student."""
        return ADVERSARIAL if self.conditioned else self.loss

    @property
    def adversarial(self):
        """Trains a discriminator beside its generator (teacher, scratch GAN, joint or adversarial student)."""
        return self.role != STUDENT or (self.discriminated and not self.fine_tuning)

    @property
    def fine_tuning(self):
        """A further stage of a student: quantization-aware fine-tuning."""
        return self.fine_tune_epochs > 0

    @property
    def parent(self):
        """The student a fine-tuning stage continues (None for a stage of its own)."""
        return dataclasses.replace(self, fine_tune_epochs=0) if self.fine_tuning else None

    @property
    def training_epochs(self):
        """Epochs this stage trains (its own, or the fine-tuning's)."""
        return self.fine_tune_epochs if self.fine_tuning else self.epochs

    @property
    def generator_arguments(self):
        """`Generator` keyword arguments of its architecture: `depth` or `widths`, and a `block` other than the paper's."""
        size = {"depth": self.depth} if self.widths is None else {"widths": self.widths}
        return size if self.block == TRANSPOSED else {**size, "block": self.block}

    @property
    def pruned(self):
        """Starts from the pruned teacher (refit or not)."""
        return self.init in (PRUNED, REFIT)

    # Names and labels ---------------------------------------------------

    @property
    def architecture(self):
        """"d2", or "w4-12-12-12" for a width profile ("w4-40-40-40_separable" for
        separable stages): its part of names and folders."""
        size = f"d{self.depth}" if self.widths is None else "w" + "-".join(map(str, self.widths))
        return size if self.block == TRANSPOSED else f"{size}_{self.block}"

    @property
    def size_label(self):
        """"d=2", or "widths 4-12-12-12" (", separable" added for separable stages)."""
        size = f"d={self.depth}" if self.widths is None else "widths " + "-".join(map(str, self.widths))
        return size if self.block == TRANSPOSED else f"{size}, {self.block}"

    @property
    def method(self):
        """"teacher", "scratch" or "student_<loss>[+<terms>]" (results.json's method)."""
        return f"student_{self._recipe}" if self.role == STUDENT else self.role

    @property
    def _recipe(self):
        return "+".join((self.loss,) + self.terms)  # The paper's students keep their names ("mse").

    @property
    def leaf(self):
        leaf = f"{self._recipe}_{self.architecture}" if self.role == STUDENT else self.architecture
        return leaf + _INIT_SUFFIXES[self.init] + (f"_qat{self.fine_tune_epochs}" if self.fine_tuning else "")

    @property
    def folder(self):
        """Its folder, relative to the run's: e.g. "students/mse_d2"."""
        return f"{_FOLDERS[self.role]}/{self.leaf}"

    @property
    def name(self):
        """e.g. "teacher_d32", "student_joint+features_d1", "student_mse_d2_qat2"."""
        return f"{self.role}_{self.leaf}"

    @property
    def recipe_label(self):
        """A student's recipe in words ("MSE + features"); None for other roles."""
        if self.role != STUDENT:
            return None
        loss = PIXEL_TERMS[self.pixel_loss].label if self.loss == MSE else _LOSS_LABELS.get(self.loss, self.loss)
        return " + ".join((loss,) + self.terms) + _INIT_LABELS[self.init]

    @property
    def label(self):
        """Its method in words: "teacher", "scratch GAN", "student (joint + features)"."""
        return f"student ({self.recipe_label})" if self.role == STUDENT else _ROLE_LABELS[self.role]


def plan_stages(config):
    """Every training stage of a run, in the order the plan lists them: the
    teacher candidates (none with a given teacher), then for each student
    architecture (`student_depths`, then `student_widths`, each in every one
    of `student_blocks`) each loss x kind x init student (with
    `student_start`, one "started" student per loss and kind), each followed
    by its quantization-aware fine-tuning when `config.qat_epochs`, and the
    scratch GAN of that architecture.

    Args:
        config: an `ExperimentConfig`.

    Returns:
        Tuple of `StageSpec`.
    """
    stages = []
    if not config.teacher_path:
        stages += [
            StageSpec(TEACHER, depth, config.teacher_epochs, discriminator_depth=config.teacher_discriminator_depth)
            for depth in config.teacher_depths
        ]
    sizes = [dict(depth=depth) for depth in config.student_depths]
    sizes += [dict(depth=None, widths=tuple(widths)) for widths in config.student_widths]
    architectures = [dict(size, block=block) for size in sizes for block in config.student_blocks]
    for architecture in architectures:
        for loss in config.losses:
            for kind in config.distillation:
                for init in (STARTED,) if config.student_start else config.student_inits:
                    student = StageSpec(
                        STUDENT, epochs=config.student_epochs, loss=loss, kind=kind, init=init,
                        discriminator_depth=config.discriminator_depth, pixel_loss=config.pixel_loss, **architecture,
                    )
                    stages.append(student)
                    if config.qat_epochs:
                        stages.append(dataclasses.replace(student, fine_tune_epochs=config.qat_epochs))
        if config.scratch:
            stages.append(StageSpec(SCRATCH, epochs=config.student_epochs, discriminator_depth=config.discriminator_depth, **architecture))
    return tuple(stages)


def of_role(stages, role, fine_tuning=False):
    """The stages of `role` (own stages, or with `fine_tuning` the fine-tuning ones), in plan order."""
    return tuple(stage for stage in stages if stage.role == role and stage.fine_tuning == fine_tuning)


def check_distillation(kinds):
    """The kinds in canonical form ("perceptual+features" -> "features+perceptual"), or InputError."""
    allowed = f"{PIXEL!r}, or terms of {DISTILLATION_TERMS} joined by '+'"
    if isinstance(kinds, str) or not kinds:
        raise InputError(f"distillation must be a non-empty tuple of student kinds: {allowed}. Received: {kinds!r}")
    canonical = []
    for kind in kinds:
        terms = str(kind).split("+")
        if kind != PIXEL and (not set(terms) <= set(DISTILLATION_TERMS) or len(set(terms)) != len(terms)):
            raise InputError(f"Unknown distillation kind {kind!r}; choose {allowed}, e.g. features+perceptual.")
        canonical.append(kind if kind == PIXEL else "+".join(t for t in DISTILLATION_TERMS if t in terms))
    if len(set(canonical)) != len(canonical):
        raise InputError(f"distillation lists a kind twice: {kinds!r}.")
    return tuple(canonical)


def check_student_start(config, widths, blocks):
    """Refuses a `student_start` that is no .keras file, comes with other inits
    or no student, or faces more than one student architecture (InputError)."""
    start, count = config.student_start, (len(config.student_depths) + len(widths)) * len(blocks)
    if not str(start).endswith(".keras"):
        raise InputError(f"student_start={start!r}: students start from a .keras generator file (written by model.save).")
    if tuple(config.student_inits) != (RANDOM,) or not config.losses:
        raise InputError(
            f"student_start={start!r} starts every student from that file: it takes no student_inits "
            f"{config.student_inits!r} (leave them random) and needs a student loss (loss={config.loss!r})."
        )
    if count != 1:
        raise InputError(
            f"student_start={start!r} fits one student architecture, the file's; this run has {count} (student_depths "
            f"{config.student_depths}, student_widths {widths}, student_blocks {blocks}). Name the file's alone, "
            "e.g. --student_depths= --student_widths=2-30-30 --student_block=separable."
        )
