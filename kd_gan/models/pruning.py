"""A student started from the pruned teacher: the channels that matter most in
every feature map of a kd_gan `Generator`, kept with their weights.

Every StyleGAN2 compression result (GAN Slimming, CAGC, DCP) starts its student
from the pruned teacher rather than from random weights: distillation then
begins close to the teacher instead of from noise.
"""

import numpy as np
import tensorflow as tf
from keras import layers

from kd_gan.errors import InputError, check_integer
from kd_gan.models.dcgan import SEPARABLE, TRANSPOSED, Generator, check_widths, generator_layout

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


def prune_generator(teacher, widths, criterion="batch_norm", name=None, refit_samples=0, seed=0, **kwargs):
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
        refit_samples: with a positive count, every transposed convolution
            (each reads a pruned map) is then refit by least squares, in order,
            so that from the student's own (pruned) inputs it best reproduces
            the teacher's pre-normalisation outputs on the kept channels (the
            image's logits for the last layer), over the teacher's maps for
            this many latent vectors (channel-pruning reconstruction, He et al.
            2017); each batch norm's moving statistics become those of the
            student's own outputs, as its training normalises them. 0: the
            teacher's weights as they are.
        seed: seed of the refit's latent vectors.
        **kwargs: passed to the student `Generator`, e.g. `dtype` (a Keras policy).

    Returns:
        The student (float32 unless `dtype` says otherwise), already close to the teacher; with the
        teacher's own widths it computes the teacher's output.

    Raises:
        InputError: the teacher is not a kd_gan Generator, `criterion` is
            unknown, `refit_samples` is negative, or `widths` does not fit
            the teacher's layers.

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
    block = kwargs.pop("block", TRANSPOSED)
    if TRANSPOSED != teacher.block or TRANSPOSED != block:
        raise InputError(
            f"prune_generator copies transposed-conv stages into transposed-conv stages; got a teacher of block "
            f"{teacher.block!r} and a student of block {block!r}. Start a {SEPARABLE!r} student from random weights."
        )
    if criterion not in CRITERIA:
        raise InputError(f"Unknown pruning criterion {criterion!r}; choose one of {CRITERIA}.")
    refit_samples = check_integer("refit_samples", refit_samples, 0)
    seed = check_integer("seed", seed, 0)
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
    kept = []  # Per map, the teacher's channels the student keeps.
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
        kept.append(keep)
        previous = keep
    kernel = teacher_output.kernel.numpy()
    student_output.kernel.assign(kernel[:, :, :, previous])
    if teacher_output.use_bias:
        student_output.bias.assign(teacher_output.bias.numpy())
    if refit_samples:
        _refit(teacher, student, kept, refit_samples, seed)
    return student


_REFIT_BATCH = 16
_RIDGE = 1e-4  # Relative to each weight's diagonal entry of the normal equations.


def _identity_kernel(layer, channels):
    """A transposed-convolution kernel `(k, k, count, channels)` whose output p
    is the contribution of the layer's weight p alone, p = (kh * k + kw) * channels + c."""
    k = layer.kernel_size[0]
    count = k * k * channels
    return tf.transpose(tf.reshape(tf.eye(count), (k, k, channels, count)), (0, 1, 3, 2))


def _design(layer, identity, inputs, crop=None):
    """The transposed convolution's output for each of its weights alone
    (`identity`: `_identity_kernel`), cropped like the layer's output (`crop`:
    the `Cropping2D` after it, or None): `(positions, k * k * channels_in)`,
    the least-squares design matrix (one row per output position and sample),
    plus a ones column with a bias."""
    count = identity.shape[2]
    shape = tf.shape(inputs)
    stride = layer.strides[0]
    columns = tf.nn.conv2d_transpose(
        inputs, identity, output_shape=(shape[0], shape[1] * stride, shape[2] * stride, count), strides=stride, padding="SAME"
    )
    if crop is not None:
        columns = crop(columns)
    columns = tf.reshape(columns, (-1, count))
    if layer.use_bias:
        columns = tf.concat([columns, tf.ones_like(columns[:, :1])], axis=1)
    return columns


def _run(stack, inputs, start, stop):
    """Layers `start:stop` of a generator's network, in inference mode."""
    for layer in stack.network[start:stop]:
        inputs = layer(inputs, training=False)
    return inputs


def _refit(teacher, student, kept, samples, seed):
    """Refits every transposed convolution of the student, in order (each
    reads a pruned map), by ridge least squares from its own inputs to the teacher's outputs on the
    kept channels (the image's logits for the last); sets each batch norm's
    moving statistics to the student's outputs."""
    z = tf.random.stateless_normal((samples, teacher.latent_dim), seed=(seed, 0))
    batches = [z[i:i + _REFIT_BATCH] for i in range(0, samples, _REFIT_BATCH)]
    convolutions = [i for i, layer in enumerate(student.network) if isinstance(layer, layers.Conv2DTranspose)]
    first = convolutions[0]
    teacher_inputs = [_run(teacher, batch, 0, first) for batch in batches]
    student_inputs = [_run(student, batch, 0, first) for batch in batches]
    for number, index in enumerate(convolutions):
        layer, source = student.network[index], teacher.network[index]
        # Convolution `number` writes map `number + 1` (the last: the image, every channel).
        channels = kept[number + 1] if number + 1 < len(kept) else np.arange(layer.filters)
        # The fit covers the positions the network keeps (28x28 images crop the 8x8 map to 7x7).
        crop = student.network[index + 1] if isinstance(student.network[index + 1], layers.Cropping2D) else None
        inputs = int(student_inputs[0].shape[-1])  # The kept channels of the map it reads.
        identity = _identity_kernel(layer, inputs)
        normal, moment, rows = 0.0, 0.0, 0
        for t, s in zip(teacher_inputs, student_inputs):
            target = source(t) if crop is None else crop(source(t))
            target = tf.reshape(tf.gather(tf.cast(target, tf.float32), channels, axis=-1), (-1, len(channels)))
            columns = _design(layer, identity, tf.cast(s, tf.float32), crop)
            rows += int(columns.shape[0])
            # Products in float32 per batch, summed in float64.
            normal += tf.cast(tf.matmul(columns, columns, transpose_a=True), tf.float64)
            moment += tf.cast(tf.matmul(columns, target, transpose_a=True), tf.float64)
        normal = normal.numpy()
        if rows < len(normal):
            raise InputError(
                f"refit_samples={samples} gives {layer.name!r} {rows} output positions for its {len(normal)} weights per "
                f"channel: give at least {-(-len(normal) * samples // rows)} samples (1024 is the experiment's)."
            )
        # Ridge scaled per weight (its own column's energy), so that small inputs are not
        # shrunk beside the bias's column; a floor for inputs that are always zero.
        normal[np.diag_indices_from(normal)] += _RIDGE * np.diag(normal) + 1e-9 * np.trace(normal) / len(normal)
        solution = np.linalg.solve(normal, moment.numpy())
        k = layer.kernel_size[0]
        weights = solution[: k * k * inputs].reshape(k, k, inputs, len(channels))
        layer.kernel.assign(weights.transpose(0, 1, 3, 2).astype(np.float32))
        if layer.use_bias:
            layer.bias.assign(solution[-1].astype(np.float32))
        stop = convolutions[number + 1] if number + 1 < len(convolutions) else len(student.network)
        position = next((i for i in range(index, stop) if isinstance(student.network[i], layers.BatchNormalization)), None)
        if position is None:  # The image layer: nothing reads its output.
            continue
        teacher_inputs = [_run(teacher, t, index, stop) for t in teacher_inputs]
        # The maps the refit layer writes (cropped where the layer crops), once: their statistics
        # become the batch norm's, then the rest of the stage runs on from them.
        written = [_run(student, s, index, position) for s in student_inputs]
        outputs = tf.concat([tf.reshape(tf.cast(o, tf.float64), (-1, o.shape[-1])) for o in written], axis=0)
        norm = student.network[position]
        norm.moving_mean.assign(tf.cast(tf.reduce_mean(outputs, axis=0), norm.moving_mean.dtype))
        norm.moving_variance.assign(tf.cast(tf.math.reduce_variance(outputs, axis=0), norm.moving_variance.dtype))
        student_inputs = [_run(student, o, position, stop) for o in written]
