"""Working with any generator: its latent size, its images, loading one from
a file, checking it fits a data set before anything trains on it.

A generator here is a Keras model or layer mapping z of shape
`(batch, latent_dim)` to images in [-1, 1], or any callable doing so (a
SavedModel signature, a `.tflite` file through `litert.TFLiteGenerator`).
"""

import os
import re
import zipfile

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from kd_gan.models import precision
from kd_gan.errors import InputError
from kd_gan.models.tflite_generator import TFLiteGenerator

RANGE_TOLERANCE = 1e-3  # Slack on [-1, 1] for a given generator's outputs (float rounding).


def latent_size(generator):
    """Size of z a generator takes: its `latent_dim`, or its input's last dimension."""
    if hasattr(generator, "latent_dim"):
        return int(generator.latent_dim)
    try:
        return int(generator.input_shape[-1])
    except (AttributeError, ValueError, TypeError):
        raise InputError(
            f"Cannot tell the latent size of {type(generator).__name__}: it has no "
            "`latent_dim` attribute and no known input shape."
        ) from None


def generator_shapes(generator):
    """`(latent_dim, image_shape)` of any generator: the size of z it takes
    (`latent_size`) and the shape of one image it makes (from one call).

    Example:
        latent_dim, image_shape = generator_shapes(load_generator("my_generator.keras"))
    """
    latent_dim = latent_size(generator)
    image = generate(generator, tf.zeros((1, latent_dim)))
    return latent_dim, tuple(int(size) for size in image.shape[1:])


def generate(generator, z, training=False):
    """Images of `generator` for `z`: a Keras model (in inference mode unless
    `training`) or any callable.

    A SavedModel signature returns a dict; a generator has one output, taken from it.
    """
    if isinstance(generator, keras.layers.Layer):
        outputs = generator(z, training=training)
    else:
        outputs = generator(z)
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise InputError(f"The generator returns several outputs {sorted(outputs)}; a generator returns one image tensor.")
        outputs = next(iter(outputs.values()))
    return outputs


def inference_function(generator):
    """`images = function(z)`: `generator`'s images in inference mode, as `generate`
    gives them, for loops that call it many times (a teacher cache, scoring).

    A Keras generator's call is traced once into a graph (any batch size)
    instead of running layer by layer from Python: filling the main job's
    teacher cache (the d=32 MNIST teacher, 60,000 images in batches of 256)
    took 5.8 s instead of 8.2-8.6 s on a 2-core AMD EPYC, with the same bits.
    Other callables (a SavedModel signature, a `.tflite` file) are called as
    they are.

    Args:
        generator: a Keras generator or any callable `generate` takes.

    Returns:
        A callable from z `(batch, latent_dim)` (cast to float32) to images.
    """
    if not isinstance(generator, keras.layers.Layer):
        return lambda z: generate(generator, z)

    def images(z):
        return generate(generator, z)

    # No control flow to convert: AutoGraph left out (it cannot read a function made here, and says so).
    compiled = tf.function(images, reduce_retracing=True, autograph=False)
    return lambda z: compiled(tf.convert_to_tensor(z, tf.float32))


def load_generator(path, call_endpoint="serving_default"):
    """Loads a generator saved as `.keras` file, a SavedModel folder or a `.tflite` file.

    `.keras` files are loaded with `safe_mode=True`, as float32 models whatever
    precision they were trained in. A `.tflite` file becomes an
    `litert.TFLiteGenerator` (LiteRT; for scoring the shipped file, not for training). A SavedModel is wrapped
    in a `keras.layers.TFSMLayer` calling `call_endpoint`; use it as a
    (frozen) teacher.

    Args:
        path: a `.keras` file, a SavedModel directory or a `.tflite` file.
        call_endpoint: signature or function name to call in a SavedModel.

    Returns:
        A Keras model or layer mapping latent vectors to images.
    """
    path = os.fspath(path)
    if path.endswith(".tflite"):
        return TFLiteGenerator(path)
    if path.endswith(".keras"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No .keras generator file at {path!r}.")
        if not zipfile.is_zipfile(path):  # Keras would say "File not found" of it.
            raise InputError(
                f"{path!r} is not a .keras file (a zip archive written by model.save): it is "
                f"{os.path.getsize(path):,} bytes of something else, truncated or another format."
            )
        # Float32 whatever it was trained in (a mixed-precision model keeps float32 weights).
        return precision.float32_copy(keras.saving.load_model(path, safe_mode=True))
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        layer = layers.TFSMLayer(path, call_endpoint=call_endpoint, trainable=False)
        # The size of z, from the endpoint's one (batch, latent_dim) input.
        specs = tf.nest.flatten(getattr(layer.call_endpoint_fn, "structured_input_signature", ()))
        shapes = [spec.shape for spec in specs if isinstance(spec, tf.TensorSpec)]
        if len(shapes) == 1 and shapes[0].rank == 2 and shapes[0][-1] is not None:
            layer.latent_dim = int(shapes[0][-1])
        return layer
    raise FileNotFoundError(
        f"No generator at {path!r}: expected a '.keras' file, a '.tflite' file or a SavedModel "
        f"directory containing 'saved_model.pb'."
    )


def check_generator(generator, latent_dim, image_shape, source="generator", samples=64, seed=0):
    """Checks that `generator` maps z of size `latent_dim` to images of
    `image_shape` in [-1, 1] (the data's range), before anything trains on it.

    Raises:
        InputError: naming `source` and what does not fit: the latent size, a
            call that fails, the image shape, or values outside [-1, 1] or not finite.
    """
    known = getattr(generator, "latent_dim", None)
    if known is not None and int(known) != latent_dim:
        raise InputError(f"{source} takes z of size {known}; this run's latent_dim is {latent_dim} (--latent_dim).")
    z = tf.random.stateless_normal((samples, latent_dim), seed=(seed, 0))
    try:
        images = generate(generator, z)
    except InputError as error:
        raise InputError(f"{source}: {error}") from error
    except (TypeError, ValueError, tf.errors.InvalidArgumentError) as error:  # Wrong input for this model.
        takes = _input_shape(generator)
        takes = f" it takes inputs of shape {takes} (is it a generator?);" if takes else ""
        raise InputError(f"{source} could not be called on z of shape {tuple(z.shape)}:{takes} {_short(error)}") from None
    shape = tuple(getattr(images, "shape", ()))
    if shape != (samples, *image_shape):
        raise InputError(f"{source} makes images of shape {shape[1:]}; this data set needs {tuple(image_shape)}.")
    check_image_range(images, source)


def start_from(generator, path, source="student_start"):
    """Copies into `generator` the weights of the `.keras` generator at `path`,
    which must be the same network: a kd_gan `Generator` of the same latent
    size, image shape, widths and block (given by depth or by widths alike), or
    another Keras model with weights of the same shapes.

    Returns:
        `generator`, its weights now the file's.

    Raises:
        InputError: naming `source`, when there is no `.keras` file at `path`
            or it holds another network.
    """
    path = os.fspath(path)
    if not path.endswith(".keras") or not os.path.isfile(path):
        raise InputError(f"{source}={path!r}: no .keras generator file there (a student starts from a file written by model.save).")
    try:
        start = load_generator(path)
    except (InputError, OSError, ValueError, TypeError) as error:
        raise InputError(f"{source}={path!r} could not be loaded as a Keras generator: {_short(error)}") from None
    wanted, found = _architecture(generator), _architecture(start)
    if found != wanted:
        raise InputError(f"{source}={path!r} must be a generator of the student's architecture, {wanted}; it holds {found}.")
    generator.set_weights(start.get_weights())
    return generator


def _architecture(model):
    """What fixes a model's weights, in words: a `Generator`'s latent size,
    image shape, widths and block, or another model's class and weight shapes."""
    if not isinstance(model, keras.Model):
        return f"a {type(model).__name__}, no Keras model"
    if all(hasattr(model, name) for name in ("latent_dim", "image_shape", "widths", "block")):
        return (
            f"{type(model).__name__}(latent_dim={model.latent_dim}, image_shape={tuple(model.image_shape)}, "
            f"widths={tuple(model.widths)}, block={model.block!r})"
        )
    return f"{type(model).__name__} with weights of shapes {[tuple(w.shape) for w in model.weights]}"


def _input_shape(model):
    """A Keras model's input shape (None when it has no single known input)."""
    try:
        return tuple(model.inputs[0].shape) if len(getattr(model, "inputs", None) or ()) == 1 else None
    except (AttributeError, ValueError):
        return None


def _short(error, limit=300):
    """An exception's message in one short line: no colour codes, arrays or Keras' echo of the arguments."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).split("Arguments received")[0]
    text = " ".join(re.sub(r"\[\[.*?\]\]", "<array>", text, flags=re.S).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_image_range(images, source="generator"):
    """Raises `InputError` naming `source` when `images` are not float images in [-1, 1]:
    integer pixels (uint8), values outside [-1, 1], positive values and none
    below 0 (a [0, 1] output), or values that are not finite."""
    dtype = tf.as_dtype(getattr(images, "dtype", tf.float32))
    if dtype.is_integer:
        raise InputError(
            f"{source} makes {dtype.name} images; generators here output float images in [-1, 1] (tanh). "
            "Rescale its output (x / 127.5 - 1 for [0, 255])."
        )
    images = np.asarray(tf.cast(images, tf.float32))
    if not np.all(np.isfinite(images)):
        raise InputError(f"{source} makes images with NaN or infinite values.")
    low, high = float(images.min()), float(images.max())
    if low < -1.0 - RANGE_TOLERANCE or high > 1.0 + RANGE_TOLERANCE:
        raise InputError(
            f"{source} makes values in [{low:.3g}, {high:.3g}]; generators here output [-1, 1] (tanh), the range "
            "the real images are scaled to. Rescale its output (e.g. x / 127.5 - 1 for [0, 255])."
        )
    if low >= 0.0 and high > 0.0:  # tanh images of [-1, 1] data reach below 0 (a black pixel is -1).
        raise InputError(
            f"{source} makes values in [{low:.3g}, {high:.3g}], none below 0: a [0, 1] output, while generators "
            "here output [-1, 1] (tanh). Rescale it (2 * x - 1)."
        )


def feature_extractor(network, layer_names, role="network"):
    """A function `(inputs, training) -> (output, [outputs of layer_names])`
    running `network` once: what feature distillation taps.

    Works for `kd_gan.Generator` / `Discriminator` (their `call_with_features`)
    and functional or Sequential Keras models (a model over the same layers,
    sharing their weights).

    Raises:
        InputError: a layer name the network does not have (the message lists
            those it has), or a network whose inner layers cannot be reached.
    """
    layer_names = list(layer_names)
    if not layer_names:
        return lambda inputs, training=False: (generate(network, inputs, training), [])
    if not isinstance(network, keras.layers.Layer):
        raise InputError(f"The {role} is a {type(network).__name__}: its layers cannot be read; feature losses need a Keras model.")
    available = [layer.name for layer in getattr(network, "network", None) or getattr(network, "layers", [])]
    missing = [name for name in layer_names if name not in available]
    if missing:
        raise InputError(f"The {role} ({type(network).__name__}) has no layer named {missing}; its layers are {available}.")
    if hasattr(network, "call_with_features"):
        return lambda inputs, training=False: network.call_with_features(inputs, layer_names, training=training)
    if getattr(network, "inputs", None) is None:
        raise InputError(
            f"The {role} ({type(network).__name__}) is a subclassed model without symbolic inputs: its inner layers "
            "cannot be tapped. Use a functional or Sequential model, or give it a call_with_features method."
        )
    tapped = keras.Model(network.inputs, [network.outputs[0]] + [network.get_layer(name).output for name in layer_names])

    def extract(inputs, training=False):
        outputs = tapped(inputs, training=training)
        return outputs[0], list(outputs[1:])

    return extract


def freeze(network):
    """Makes `network` untrainable, its variables included.

    A model restored from a config saved while frozen is built with
    `trainable=False` before its variables exist; Keras then leaves those
    variables marked trainable, and setting `trainable = False` again does
    not reach them. Each variable is unmarked here.
    """
    network.trainable = False
    for variable in network.variables:
        variable.trainable = False
    return network
