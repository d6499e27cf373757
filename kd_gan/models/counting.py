"""Sizes of a model: parameters, compression ratios, multiply-accumulates."""

import math

from keras import layers

from kd_gan.errors import InputError, check_integer
from kd_gan.models.dcgan import Discriminator, Generator


def count_parameters(model):
    """Number of scalars in `model`'s weights (trainable and not).

    Batch-norm moving statistics count: they ship with the model.
    """
    return int(sum(math.prod(weight.shape) for weight in model.weights))


def compression_ratio(teacher, student):
    """Teacher-to-student parameter ratio, e.g. 1669.0 for the paper's 1669:1."""
    return count_parameters(teacher) / count_parameters(student)


def count_multiply_accumulates(model, batch_size=1):
    """Multiply-accumulates (MACs) of one forward pass of `model` on `batch_size` images.

    Counted per layer of `model.network`, walking the shapes from the model's
    input (`(latent_dim,)` for a `Generator`, `image_shape` for a
    `Discriminator`):

    - `Dense`: inputs x units (per position of any leading axes).
    - `Conv2D`: output positions x kernel_h x kernel_w x in_channels / groups
      x filters.
    - `Conv2DTranspose`: *input* positions x kernel_h x kernel_w x in_channels
      x filters. Each input pixel scatters a kernel_h x kernel_w x filters
      patch; taps that land outside the output (the border that "same"
      padding trims) are counted too. With stride 2 and "same" padding this
      is the usual deconvolution count (the same number as the Conv2D whose
      gradient it is, with input and output swapped).
    - `SeparableConv2D`: output positions x in_channels x depth_multiplier
      x (kernel_h x kernel_w + filters): the depthwise taps, then the 1x1 mix.

    Biases, batch normalisation, activations, reshapes, flattening and crops
    are element-wise or move data only: they are not counted. A layer with
    weights of any other type raises, rather than being counted as zero.

    Args:
        model: a `Generator` or `Discriminator` (any precision).
        batch_size: images per pass; the count is linear in it.

    Returns:
        Int, the MACs for `batch_size` images (per image by default).

    Raises:
        InputError: `model` is neither model, `batch_size` < 1, or a layer
            type with weights that is not one of the above.

    Example:

    ```python
    count_multiply_accumulates(Generator(128, (28, 28, 1), depth=64))  # per image
    ```
    """
    check_integer("batch_size", batch_size, 1)
    if isinstance(model, Generator):
        shape = (batch_size, model.latent_dim)
    elif isinstance(model, Discriminator):
        shape = (batch_size,) + model.image_shape
    else:
        raise InputError(f"model must be a kd_gan Generator or Discriminator. Received: {type(model).__name__}")

    def _spatial_and_channels(shape, data_format):
        """(spatial positions, channels) of a 4-D (batch, ...) feature-map shape."""
        if data_format == "channels_first":
            return math.prod(shape[2:]), shape[1]
        return math.prod(shape[1:-1]), shape[-1]

    total = 0
    for layer in model.network:
        output_shape = tuple(layer.compute_output_shape(shape))
        if isinstance(layer, layers.Dense):
            total += math.prod(shape[:-1]) * shape[-1] * layer.units
        elif isinstance(layer, layers.Conv2DTranspose):
            positions, channels = _spatial_and_channels(shape, layer.data_format)
            total += shape[0] * positions * math.prod(layer.kernel_size) * channels * layer.filters
        elif isinstance(layer, layers.SeparableConv2D):  # Depthwise k x k per channel, then a 1x1 mix.
            positions, _ = _spatial_and_channels(output_shape, layer.data_format)
            _, channels = _spatial_and_channels(shape, layer.data_format)
            depthwise = channels * layer.depth_multiplier
            total += shape[0] * positions * depthwise * (math.prod(layer.kernel_size) + layer.filters)
        elif isinstance(layer, layers.Conv2D):
            positions, _ = _spatial_and_channels(output_shape, layer.data_format)
            _, channels = _spatial_and_channels(shape, layer.data_format)
            total += shape[0] * positions * math.prod(layer.kernel_size) * channels // layer.groups * layer.filters
        elif layer.weights and not isinstance(layer, layers.BatchNormalization):
            raise InputError(
                f"count_multiply_accumulates does not know layer {layer.name!r} of type {type(layer).__name__}; "
                f"it counts Dense, Conv2D, SeparableConv2D and Conv2DTranspose and skips BatchNormalization and layers without weights."
            )
        shape = output_shape
    return int(total)
