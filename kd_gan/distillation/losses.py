"""What a student learns from its teacher: distillation losses as objects.

Each loss compares teacher and student per example and returns a float32
vector `(batch,)`; the `Distiller` weights and sums them (with an optional
adversarial term). A loss names the layers it reads (`teacher_layers`,
`student_layers`; empty: the images), so the Distiller taps each network
once per step whatever the losses need.

| loss | compares | learned parts | extra cost per step |
|---|---|---|---|
| `PixelMSE` (the paper's) | images, squared error | - | - |
| `PixelL1` | images, absolute error | - | - |
| `PixelSSIM` (`structural.py`) | images, 1 - SSIM at several scales | - | - |
| `FeatureLoss` | intermediate maps, through 1x1 adapters | adapters | the teacher's forward pass (the cache holds images only) |
| `PerceptualLoss` | a frozen network's features of both images | - | that network, forward on both batches, backward on the student's |

Keras' own `keras.distillation.DistillationLoss` objects (same shapes in
teacher and student) are accepted through `KerasDistillationLoss`.
"""

import weakref

import keras
import tensorflow as tf

from kd_gan.errors import InputError
from kd_gan.models.any_generator import feature_extractor, freeze

EPSILON = 1e-6  # Keeps the normalisations of feature maps finite at zero.


def pixel_mse(target_images, images):
    """Per-example mean squared pixel error (the paper's MSE distillation term), in float32
    whatever precision the images come in."""
    target_images, images = tf.cast(target_images, tf.float32), tf.cast(images, tf.float32)
    return tf.reduce_mean(tf.square(images - target_images), axis=[1, 2, 3])


def _per_example_mean(values):
    return tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)


class DistillationLoss(keras.layers.Layer):
    """Base of the distillation losses: compares teacher and student per example.

    Subclasses set `teacher_layers` and `student_layers` (names of the
    layers whose outputs they compare, empty for the images) and implement
    `compute_loss`. Learned parts (adapters) are built by `build_for` from
    the shapes of what they compare, and train with the student.
    """

    teacher_layers = ()
    student_layers = ()

    def build_for(self, teacher_shapes, student_shapes, distiller):
        """Builds learned parts from the shapes of the compared tensors (one
        list per network, batch first) and binds `distiller`'s networks.
        Subclasses refuse shapes they cannot compare in `check_shapes`."""
        self.check_shapes(teacher_shapes, student_shapes)
        self.bind(distiller)
        self.built = True

    def check_shapes(self, teacher_shapes, student_shapes):
        """Raises InputError before training where the compared tensors' shapes
        (one list per network, batch first) do not suit this loss; accepts any by default."""

    def bind(self, distiller):
        """Ties the loss to `distiller`: its adapters and networks are that one's alone."""
        bound = getattr(self, "_distiller", None)
        if bound is not None and bound() is not distiller:  # Another one, alive or not.
            raise InputError(
                f"This {type(self).__name__} ({self.name!r}) already serves another Distiller: give each "
                "Distiller its own loss objects (adapters and feature networks are per Distiller)."
            )
        self._distiller = weakref.ref(distiller)

    def compute_loss(self, teacher_outputs, student_outputs):
        """Per-example loss `(batch,)` from the lists of compared tensors."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_loss.")

    def call(self, teacher_outputs, student_outputs):
        return self.compute_loss(teacher_outputs, student_outputs)


@keras.saving.register_keras_serializable(package="kd_gan")
class PixelMSE(DistillationLoss):
    """Mean squared pixel error, `mean_pixels (S(z) - T(z))**2`: the paper's term (Sec. 3.2).

    Example:

    ```python
    distiller = Distiller(teacher, student, distillation_losses=[PixelMSE()])
    ```
    """

    def __init__(self, name="mse", **kwargs):
        super().__init__(name=name, **kwargs)

    def compute_loss(self, teacher_outputs, student_outputs):
        return pixel_mse(teacher_outputs[0], student_outputs[0])


@keras.saving.register_keras_serializable(package="kd_gan")
class PixelL1(DistillationLoss):
    """Mean absolute pixel error, `mean_pixels |S(z) - T(z)|` (GAN Compression's
    reconstruction term).

    Example:

    ```python
    distiller = Distiller(teacher, student, distillation_losses=[PixelL1()])
    ```
    """

    def __init__(self, name="l1", **kwargs):
        super().__init__(name=name, **kwargs)

    def compute_loss(self, teacher_outputs, student_outputs):
        difference = tf.cast(student_outputs[0], tf.float32) - tf.cast(teacher_outputs[0], tf.float32)
        return _per_example_mean(tf.abs(difference))


def _shape_text(shape):
    return "x".join(str(size) for size in shape[1:])


@keras.saving.register_keras_serializable(package="kd_gan")
class FeatureLoss(DistillationLoss):
    """Intermediate feature maps of the student, through learned 1x1 adapters,
    against the teacher's (GAN Compression, Li et al., 2020, Eq. 3).

    For each pair of layers (t, s): `A(s)`, a 1x1 convolution (a dense layer
    for flat outputs) from the student's channels to the teacher's, resized
    bilinearly to the teacher's spatial size, is compared with `t` by the
    relative squared error `mean (A(s) - t)**2 / (mean t**2 + eps)` (1 for a
    student that outputs zeros, whatever the teacher's scale); the loss is
    the mean over pairs. Adapters train with the student and are not part of
    it: `distiller.student` is exported without them.

    Used with a pixel term (the student's last layer is compared by no
    feature map): `distillation_losses=[PixelMSE(), FeatureLoss()]`.

    Args:
        teacher_layers: names of the teacher's layers; None: the teacher's
            `feature_layer_names()` (each block's output in `kd_gan.Generator`).
        student_layers: names of the student's layers, one per teacher layer;
            None: `teacher_layers` when given, else the student's
            `feature_layer_names()`.

    Works with `kd_gan.Generator` and any functional or Sequential Keras
    generator; the teacher's pass runs every step (cached teacher images
    hold no feature maps).

    Example:

    ```python
    losses = [PixelMSE(), FeatureLoss()]  # kd_gan.Generator pairs: every block
    distiller = Distiller(teacher, student, distillation_losses=losses, distillation_loss_weights=[1.0, 0.1])
    ```
    """

    def __init__(self, teacher_layers=None, student_layers=None, name="features", **kwargs):
        super().__init__(name=name, **kwargs)
        self.teacher_layers = tuple(teacher_layers) if teacher_layers is not None else None
        self.student_layers = tuple(student_layers) if student_layers is not None else None
        self.adapters = []

    def resolve_layers(self, teacher, student):
        """Fills unset layer names: the networks' `feature_layer_names()`, or
        the teacher's names for the student when only those are given."""
        if self.student_layers is None:
            given = self.teacher_layers is not None
            self.student_layers = self.teacher_layers if given else tuple(_default_layers(student, "student", "student_layers"))
        if self.teacher_layers is None:
            self.teacher_layers = tuple(_default_layers(teacher, "teacher", "teacher_layers"))
        if not self.teacher_layers or len(self.teacher_layers) != len(self.student_layers):
            raise InputError(
                f"FeatureLoss pairs teacher and student layers one to one; got teacher_layers={list(self.teacher_layers)} "
                f"and student_layers={list(self.student_layers)}."
            )

    def check_shapes(self, teacher_shapes, student_shapes):
        for teacher_name, student_name, teacher_shape, student_shape in zip(
            self.teacher_layers, self.student_layers, teacher_shapes, student_shapes
        ):
            pair = f"teacher layer {teacher_name!r} ({_shape_text(teacher_shape)}) and student layer {student_name!r} ({_shape_text(student_shape)})"
            if len(teacher_shape) != len(student_shape) or len(teacher_shape) not in (2, 4):
                raise InputError(f"FeatureLoss cannot match {pair}: both must be feature maps (batch, h, w, c) or vectors (batch, c).")
            if len(teacher_shape) == 4 and any(size is None for size in teacher_shape[1:3]):
                raise InputError(f"FeatureLoss needs the teacher's spatial size; {pair} has an unknown one.")

    def build_for(self, teacher_shapes, student_shapes, distiller):
        self.check_shapes(teacher_shapes, student_shapes)
        self.bind(distiller)
        if self.adapters:  # Already built for this Distiller.
            return
        dtype = distiller.student.dtype_policy
        for student_name, teacher_shape, student_shape in zip(self.student_layers, teacher_shapes, student_shapes):
            layer = keras.layers.Conv2D if len(teacher_shape) == 4 else keras.layers.Dense
            arguments = {"kernel_size": 1} if len(teacher_shape) == 4 else {}
            adapter = layer(teacher_shape[-1], name=f"adapter_{student_name}", dtype=dtype, **arguments)
            adapter.build(student_shape)
            self.adapters.append(adapter)
        self.built = True

    def compute_loss(self, teacher_outputs, student_outputs):
        pair_losses = []
        for adapter, teacher_map, student_map in zip(self.adapters, teacher_outputs, student_outputs):
            teacher_map = tf.cast(teacher_map, tf.float32)
            adapted = tf.cast(adapter(student_map), tf.float32)
            if teacher_map.shape.rank == 4 and adapted.shape[1:3] != teacher_map.shape[1:3]:
                adapted = tf.image.resize(adapted, teacher_map.shape[1:3], method="bilinear")
            scale = tf.stop_gradient(_per_example_mean(tf.square(teacher_map))) + EPSILON
            pair_losses.append(_per_example_mean(tf.square(adapted - teacher_map)) / scale)
        return tf.add_n(pair_losses) / float(len(pair_losses))

    def get_config(self):
        config = super().get_config()
        config.update(
            teacher_layers=list(self.teacher_layers) if self.teacher_layers is not None else None,
            student_layers=list(self.student_layers) if self.student_layers is not None else None,
        )
        return config


def _default_layers(network, role, argument):
    if hasattr(network, "feature_layer_names"):
        return network.feature_layer_names()
    raise InputError(
        f"The {role} ({type(network).__name__}) names no default feature layers: pass {argument}=[...], "
        f"names of its layers."
    )


def _unit_channels(features):
    """Each position's channel vector scaled to unit length (LPIPS, Zhang et al., 2018)."""
    features = tf.cast(features, tf.float32)
    return features * tf.math.rsqrt(tf.reduce_sum(tf.square(features), axis=-1, keepdims=True) + EPSILON)


@keras.saving.register_keras_serializable(package="kd_gan")
class PerceptualLoss(DistillationLoss):
    """Distance between a frozen network's features of teacher and student
    images (the perceptual terms of OMGD, CAGC, TinyGAN; DCD's use of a
    discriminator as that network).

    `mean over layers of mean_positions ||u(F_l(S(z))) - u(F_l(T(z)))||**2`,
    with `u` scaling each position's channel vector to unit length (LPIPS
    without learned weights), so each layer's term lies in [0, 4].

    Args:
        feature_network: what extracts the features:
            - "discriminator" (default): the Distiller's own discriminator,
              the only network at hand for any data set offline; it keeps
              training (joint loss) and its gradient reaches only the
              student. Cost per step: one more discriminator pass on two
              batches, forward and backward (about a third of a joint step
              at equal depths, measured in docs/RESULTS.md).
            - a Keras model (e.g. a trained teacher's `kd_gan.Discriminator`):
              frozen and saved with the loss.
            - "inception": the FID Inception (`$KD_GAN_INCEPTION` or
              TF-Hub), pool_3 of 299x299 resized images. Its forward and
              backward on two batches cost seconds per step on a CPU, and
              it is the network FID and KID are measured with: scores of a
              student trained on it are not comparable to the others.
        layers: names of the network's layers; None: its
            `feature_layer_names()` (each block of `kd_gan.Discriminator`).

    Example:

    ```python
    losses = [PixelMSE(), PerceptualLoss(teacher_discriminator)]
    distiller = Distiller(teacher, student, distillation_losses=losses)
    ```
    """

    NETWORKS = ("discriminator", "inception")

    def __init__(self, feature_network="discriminator", layers=None, name="perceptual", **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(feature_network, str) and feature_network not in self.NETWORKS:
            raise InputError(
                f"feature_network must be one of {self.NETWORKS} or a Keras model. Received: feature_network={feature_network!r}"
            )
        if not isinstance(feature_network, str) and not isinstance(feature_network, keras.layers.Layer):
            raise InputError(
                f"feature_network must be one of {self.NETWORKS} or a Keras model. Received a {type(feature_network).__name__}."
            )
        if isinstance(feature_network, keras.layers.Layer):
            self.feature_network = freeze(feature_network)  # Frozen: it measures, it does not learn.
        self.network_name = feature_network if isinstance(feature_network, str) else None
        self.feature_layers = tuple(layers) if layers is not None else None
        self._extract = None

    def build_for(self, teacher_shapes, student_shapes, distiller):
        self.check_shapes(teacher_shapes, student_shapes)
        self.bind(distiller)
        if self.network_name == "inception":
            from kd_gan.evaluation.classifiers import inception_network, preprocess_for_inception

            call, _ = inception_network()  # The TensorFlow graph: the loss is differentiated through it.
            self._extract = lambda images: [call(preprocess_for_inception(images))["pool_3"]]
        else:
            network = distiller.discriminator if self.network_name == "discriminator" else self.feature_network
            if network is None:
                raise InputError(
                    "PerceptualLoss(feature_network='discriminator') reads the Distiller's discriminator, and this "
                    "Distiller has none: pass discriminator= (loss='joint') or a frozen network, e.g. PerceptualLoss(teacher_discriminator)."
                )
            if self.feature_layers is None:
                self.feature_layers = tuple(_default_layers(network, "feature network", "layers"))
            tapped = feature_extractor(network, self.feature_layers, "feature network")
            self._extract = lambda images: tapped(images, training=False)[1]
        self.built = True

    def compute_loss(self, teacher_outputs, student_outputs):
        teacher_features = self._extract(tf.stop_gradient(teacher_outputs[0]))
        student_features = self._extract(student_outputs[0])
        layer_losses = [
            _per_example_mean(tf.reduce_sum(tf.square(_unit_channels(s) - tf.stop_gradient(_unit_channels(t))), axis=-1))
            for t, s in zip(teacher_features, student_features)
        ]
        return tf.add_n(layer_losses) / float(len(layer_losses))

    def get_config(self):
        config = super().get_config()
        network = self.network_name or keras.saving.serialize_keras_object(self.feature_network)
        config.update(feature_network=network, layers=list(self.feature_layers) if self.feature_layers is not None else None)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("feature_network"), dict):
            config["feature_network"] = keras.saving.deserialize_keras_object(config["feature_network"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="kd_gan")
class KerasDistillationLoss(DistillationLoss):
    """A `keras.distillation.DistillationLoss` (e.g. `FeatureDistillation`)
    used by the Distiller: its layer names (None: the images) are tapped,
    shapes must match, and its batch-mean loss stands for every example.

    Example:

    ```python
    from keras.distillation import FeatureDistillation
    distiller = Distiller(teacher, student, distillation_losses=[FeatureDistillation(loss="mae")])
    ```
    """

    def __init__(self, loss, **kwargs):
        kwargs.setdefault("name", type(loss).__name__ if not isinstance(loss, dict) else "keras_distillation")
        super().__init__(**kwargs)
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        self.loss = loss
        teacher_name = getattr(loss, "teacher_layer_name", None)
        student_name = getattr(loss, "student_layer_name", None)
        self.teacher_layers = (teacher_name,) if teacher_name else ()
        self.student_layers = (student_name,) if student_name else ()

    def check_shapes(self, teacher_shapes, student_shapes):
        if [tuple(s[1:]) for s in teacher_shapes] != [tuple(s[1:]) for s in student_shapes]:
            raise InputError(
                f"{type(self.loss).__name__} compares tensors of equal shapes; teacher gives "
                f"{[_shape_text(s) for s in teacher_shapes]}, student {[_shape_text(s) for s in student_shapes]}. "
                "Use kd_gan.distillation.losses.FeatureLoss for maps of different widths."
            )

    def compute_loss(self, teacher_outputs, student_outputs):
        teacher = tf.cast(teacher_outputs[0], tf.float32)
        value = tf.cast(self.loss.compute_loss(teacher, tf.cast(student_outputs[0], tf.float32)), tf.float32)
        return tf.fill(tf.shape(teacher)[:1], value)

    def get_config(self):
        config = super().get_config()
        config.update(loss=keras.saving.serialize_keras_object(self.loss))
        return config


def as_distillation_loss(loss):
    """`loss` as a `DistillationLoss`: ours as is, Keras' wrapped."""
    if isinstance(loss, DistillationLoss):
        return loss
    if isinstance(loss, keras.distillation.DistillationLoss):
        return KerasDistillationLoss(loss)
    raise InputError(
        f"distillation_losses takes kd_gan.distillation.losses.DistillationLoss or keras.distillation.DistillationLoss objects; "
        f"received a {type(loss).__name__}."
    )
