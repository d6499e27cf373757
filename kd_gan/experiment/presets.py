"""Presets: the settings a run starts from (explicit settings override them)."""

from kd_gan.errors import InputError

MAIN_TEACHER_EPOCHS, MAIN_STUDENT_EPOCHS = 5, 4

# Presets fill config fields; explicit flags override them. Sample counts:
# FID depends on them, so compare runs only at equal counts.
PRESETS = {
    # The main job (MNIST, `python run_experiment.py --data_dir=...`): a teacher that draws
    # clean digits (MNIST score >= 8) in a few minutes of a 2-core CPU, a 36:1 student that
    # keeps most of it and its scratch GAN. Chosen by measurement (docs/RESULTS.md, "The main
    # job"; benchmarks/probe_mnist_teacher.py): hinge loss and the weight average (6.36
    # against ns' 5.68 after three epochs), latent 32 (6.36 against 5.68 at 128), learning
    # rate 5e-4 (8.19 after four epochs, 2e-4 needs six), bfloat16 where the CPU has
    # bfloat16 units (1.7x the teacher's float32 speed on a Xeon with AMX, same scores),
    # a d=16 discriminator beside it (8.25 after five epochs in the time d=32 takes for four);
    # the student d=3 (d=2 keeps 81%, d=3 90% in the same seconds) on cached teacher
    # outputs at learning rate 3e-3 (80% against 78% at 1e-3).
    "main": dict(
        objective="hinge", ema_decay=0.999, precision="auto", learning_rate=5e-4, student_learning_rate=3e-3,
        teacher_depths={"mnist": (32,)}, teacher_discriminator_depth={"mnist": 16}, student_depths={"mnist": (3,)},
        teacher_epochs={"mnist": MAIN_TEACHER_EPOCHS}, student_epochs={"mnist": MAIN_STUDENT_EPOCHS},
        teacher_cache={"mnist": 60_000}, eval_samples={"mnist": 10_000},
    ),
    # MNIST end to end in 10 min 14 s on a 2-core CPU (measured, docs/RESULTS.md), 2 min 16 s
    # of it training the MNIST classifier the package now ships; CIFAR-10 18.5 min,
    # CelebA 14 min; 500 Inception samples per model for cifar10 / celeb_a (~20-30 s
    # each here) against the whole training split (its statistics computed once).
    "quick": dict(
        teacher_depths=(16, 32), student_depths=(1, 2, 4), teacher_epochs=3, student_epochs=3,
        eval_samples={"mnist": 10_000, "cifar10": 500, "celeb_a": 500},
    ),
    # A teacher worth distilling in about an hour of a 2-core CPU (with AVX512-BF16)
    # per colour data set, then students at the paper's ratio and two milder ones,
    # and their scratch GANs; 10,000 samples per FID. Chosen from measurements
    # (docs/RESULTS.md, "Which objective on a CPU"): the objective from benchmarks/bench_objectives.py,
    # depth 32 (a deeper teacher takes ~4x the time per step), the weight average,
    # bfloat16 training and Inception where the CPU has bfloat16 units (float32
    # elsewhere: it emulates bfloat16, slower), students on cached teacher outputs.
    "cpu": dict(
        objective="hinge", ema_decay=0.999, precision="auto",
        teacher_depths={"mnist": (128,), "cifar10": (32,), "celeb_a": (32,), "images": (32,)},
        student_depths=(1, 2, 4),
        teacher_epochs={"mnist": 5, "cifar10": 100, "celeb_a": 100, "images": 100},
        student_epochs={"mnist": 50, "cifar10": 20, "celeb_a": 100, "images": 100},
        teacher_cache={"mnist": 60_000, "cifar10": 50_000, "celeb_a": 10_000, "images": 10_000},
        inception_precision="auto",  # bfloat16 on CPUs with bfloat16 units (inception_engines.choose).
        eval_samples=10_000,
    ),
    # The paper's scale, for a GPU: several teachers, a wide sweep of student
    # sizes, 10,000 samples per FID (the paper's epochs are not known to us).
    "paper": dict(
        teacher_depths=(32, 64, 128), student_depths=(1, 2, 4, 8, 16), teacher_epochs=25, student_epochs=25,
        eval_samples=10_000,
    ),
}
# The preset a run takes when none is named: the colour sets get the CPU
# recipe, whose teacher is worth distilling (a three-epoch one is not: FID
# ~300, docs/RESULTS.md); MNIST the main job. NO_PRESET names none.
DEFAULT_PRESETS = {"mnist": "main", "cifar10": "cpu", "celeb_a": "cpu"}
NO_PRESET = "none"


def default_preset(preset, dataset):
    """The preset to apply: `preset` when named, `dataset`'s default when None,
    no preset (None) for `NO_PRESET`."""
    if preset is None:
        return DEFAULT_PRESETS.get(dataset)
    return None if preset == NO_PRESET else preset


# Latent size per data set in the presets: 32 lets MNIST reach the paper's
# 1669:1 (teacher d=128 vs student d=1: 1,696:1); 128 for the colour sets.
PRESET_LATENT_DIMS = {"mnist": 32, "cifar10": 128, "celeb_a": 128, "images": 128}


def preset_values(name, dataset):
    """Config values of preset `name` for `dataset` (explicit settings override them)."""
    if name not in PRESETS:
        raise InputError(f"Unknown preset {name!r}; choose one of {tuple(PRESETS)}.")
    values = dict(PRESETS[name], latent_dim=PRESET_LATENT_DIMS[dataset], preset=name)
    # A value given per data set (a dict) is that data set's.
    for key, value in values.items():
        if isinstance(value, dict):
            if dataset not in value:
                raise InputError(f"Preset {name!r} has no {key} for dataset {dataset!r}; give --{key}.")
            values[key] = value[dataset]
    return values
