"""A student started from the pruned teacher: the channels that matter most in
every feature map of a kd_gan `Generator`, kept with their weights.

Every StyleGAN2 compression result (GAN Slimming, CAGC, DCP) starts its student
from the pruned teacher rather than from random weights: distillation then
begins close to the teacher instead of from noise.
"""

import numpy as np
from keras import layers

from kd_gan.errors import InputError
from kd_gan.models.dcgan import Generator, check_widths, generator_layout

CRITERIA = ("batch_norm", "filter_norm")


def _maps(generator):
    """Per feature map, `(producer, norm)`: the Dense or Conv2DTranspose that
    writes it and the BatchNormalization after it; then the output layer."""
    weighted = [layer for layer in generator.network if isinstance(layer, (layers.Dense, layers.Conv2DTranspose))]
    norms = [layer for layer in generator.network if isinstance(layer, layers.BatchNormalization)]
    return list(zip(weighted[:-1], norms)), weighted[-1]


def _channel_scores(producer, norm, width, criterion):
    """One score per channel of a map: |gamma| of its batch norm, or the L2
    norm of the weights that write it (summed over the positions of the 4x4
    projection, whose batch norm is per unit)."""
    if criterion == "batch_norm":
        values = np.abs(norm.gamma.numpy())
    else:
        kernel = producer.kernel.numpy()
        values = (kernel**2).sum(axis=0) if isinstance(producer, layers.Dense) else (kernel**2).sum(axis=(0, 1, 3))
    return values.reshape(-1, width).sum(axis=0) if isinstance(producer, layers.Dense) else values


def _kept(scores, count):
    """The `count` best channels, in their original order."""
    return np.sort(np.argsort(-scores, kind="stable")[:count])


def prune_generator(teacher, widths, criterion="batch_norm", name=None, **kwargs):
    """A `Generator` of width profile `widths` holding the teacher's most
    important channels of every feature map, with their weights.

    Args:
        teacher: a kd_gan `Generator` (any depth or width profile).
        widths: the student's channels per feature map (`Generator(widths=...)`),
            each at most the teacher's.
        criterion: how channels are ranked: "batch_norm" (|gamma| of the batch
            norm after the map, the network-slimming criterion) or
            "filter_norm" (L2 norm of the weights that write the channel).
        name: the student's name (default: the teacher's with "_pruned").
        **kwargs: passed to the student `Generator`, e.g. `dtype` (a Keras policy).

    Returns:
        The student (float32 unless `dtype` says otherwise), already close to the teacher; with the
        teacher's own widths it computes the teacher's output.

    Raises:
        InputError: the teacher is not a kd_gan Generator, `criterion` is
            unknown, or `widths` does not fit the teacher's layers.

    Example:

    ```python
    student = kd_gan.prune_generator(teacher, widths=(4, 12, 12, 12))
    distiller = kd_gan.Distiller(teacher, student, loss="mse")  # starts from the pruned teacher
    ```
    """
    if not isinstance(teacher, Generator):
        raise InputError(
            f"prune_generator takes a kd_gan Generator (its layers are known); got {type(teacher).__name__}. "
            "Distil another generator into a kd_gan.Generator first, or start the student from random weights."
        )
    if criterion not in CRITERIA:
        raise InputError(f"Unknown pruning criterion {criterion!r}; choose one of {CRITERIA}.")
    size = teacher.image_shape[0]
    widths = check_widths(widths, size)
    wider = [(i, w, t) for i, (w, t) in enumerate(zip(widths, teacher.widths)) if w > t]
    if wider:
        listing = ", ".join(f"map {i}: {w} > {t}" for i, w, t in wider)
        raise InputError(
            f"A pruned student cannot be wider than its teacher ({listing}); the teacher's widths are {teacher.widths}."
        )
    student = Generator(teacher.latent_dim, teacher.image_shape, widths=widths, name=name or f"{teacher.name}_pruned", **kwargs)
    teacher_maps, teacher_output = _maps(teacher)
    student_maps, student_output = _maps(student)
    base = generator_layout(size)[0]
    previous = None  # Kept channels of the map before (None: the latent vector, all kept).
    for index, ((producer, norm), (target, target_norm)) in enumerate(zip(teacher_maps, student_maps)):
        width = teacher.widths[index]
        keep = _kept(_channel_scores(producer, norm, width, criterion), widths[index])
        kernel = producer.kernel.numpy()
        if isinstance(producer, layers.Dense):
            # Units are (position, channel) of the 4x4 map, channels last.
            units = (np.arange(base * base)[:, None] * width + keep[None, :]).reshape(-1)
            target.kernel.assign(kernel[:, units])
        else:
            units = keep
            target.kernel.assign(kernel[:, :, keep][:, :, :, previous])
        target_norm.set_weights([weight[units] for weight in norm.get_weights()])
        previous = keep
    kernel = teacher_output.kernel.numpy()
    student_output.kernel.assign(kernel[:, :, :, previous])
    if teacher_output.use_bias:
        student_output.bias.assign(teacher_output.bias.numpy())
    return student
