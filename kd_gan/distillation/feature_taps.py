"""What a Distiller's losses read of teacher and student, tapped once per
step: the images and the named layers' outputs, by one pass of each network."""

import tensorflow as tf

from kd_gan.errors import InputError
from kd_gan.models.any_generator import check_image_range, feature_extractor

IMAGES = None  # Key of the images among the tapped outputs (layer names are strings).
PROBE_SAMPLES = 16


def _layer_union(names_per_loss):
    """Every layer name the losses read, once, in first-use order."""
    return list(dict.fromkeys(name for names in names_per_loss for name in names))


class Taps:
    """The teacher's and the student's outputs that `distillation_losses` compare.

    Args:
        teacher, student: the networks (the teacher frozen).
        distillation_losses: `kd_gan.distillation.losses.DistillationLoss` objects; their
            unset layer names are filled from the networks.
    """

    def __init__(self, teacher, student, distillation_losses):
        for loss in distillation_losses:
            if hasattr(loss, "resolve_layers"):
                loss.resolve_layers(teacher, student)
        self.teacher_layers = _layer_union(loss.teacher_layers for loss in distillation_losses)
        self.student_layers = _layer_union(loss.student_layers for loss in distillation_losses)
        self._teacher = feature_extractor(teacher, self.teacher_layers, "teacher")
        self._student = feature_extractor(student, self.student_layers, "student")

    def teacher_outputs(self, z):
        images, maps = self._teacher(z, training=False)
        outputs = {IMAGES: images, **dict(zip(self.teacher_layers, maps))}
        return {name: tf.stop_gradient(value) for name, value in outputs.items()}

    def student_outputs(self, z, training):
        images, maps = self._student(z, training=training)
        return {IMAGES: images, **dict(zip(self.student_layers, maps))}

    @staticmethod
    def compared(loss, teacher_outputs, student_outputs):
        """The lists of tensors `loss` compares (the images when it names no layers)."""
        teacher_values = [teacher_outputs[name] for name in loss.teacher_layers or (IMAGES,)]
        student_values = [student_outputs[name] for name in loss.student_layers or (IMAGES,)]
        return teacher_values, student_values

    def probe(self, distiller, check_range=True):
        """Calls both networks (and the discriminator) on probe z, refuses what does
        not fit by name, and builds each loss from the shapes it compares."""
        z = tf.random.stateless_normal((PROBE_SAMPLES, distiller.latent_dim), seed=(distiller.seed, -1))
        try:
            teacher_outputs = self.teacher_outputs(z)
        except InputError:
            raise
        except (TypeError, ValueError, tf.errors.InvalidArgumentError) as error:  # Wrong input for this teacher.
            raise InputError(
                f"The teacher could not be called on latent vectors of shape {tuple(z.shape)} "
                f"(the student's latent size is {distiller.latent_dim}): {error}"
            ) from error
        if check_range:
            check_image_range(teacher_outputs[IMAGES], "The teacher")
        student_outputs = self.student_outputs(z, training=False)
        teacher_shape, student_shape = tuple(teacher_outputs[IMAGES].shape[1:]), tuple(student_outputs[IMAGES].shape[1:])
        if teacher_shape != student_shape:
            raise InputError(
                f"Teacher and student must produce images of the same shape: teacher gives {teacher_shape}, "
                f"student gives {student_shape}."
            )
        if distiller.discriminator is not None:
            images = student_outputs[IMAGES]
            logits = distiller.discriminator((images, z) if distiller.conditioned else images, training=False)
            if logits.shape.rank != 2 or logits.shape[-1] != 1:
                raise InputError(
                    f"The discriminator must map the student's images {student_shape} to one logit each; it "
                    f"returned shape {tuple(logits.shape)}."
                )
        for loss in distiller.distillation_losses:
            teacher_values, student_values = self.compared(loss, teacher_outputs, student_outputs)
            loss.build_for([v.shape for v in teacher_values], [v.shape for v in student_values], distiller)
