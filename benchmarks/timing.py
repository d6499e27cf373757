"""Helpers shared by the training benchmarks: step clocks for `fit`, a plain
`tf.function` MSE loop, Keras' own Distiller on the same pair, and the table."""

import statistics
import time

import keras
import tensorflow as tf

from kd_gan.training import optimizers


class StepClock(keras.callbacks.Callback):
    """Seconds from the start of the first step to the end of the last.

    `fit`'s set-up and tear-down are left out: on this VM tear-down sometimes
    waited up to ~1.3 s per call whatever the step count, for Keras' Distiller
    and ours alike, which would swamp short runs.
    """

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.start


def fit_runner(model, dataset):
    """`run(steps)` -> seconds of `model.fit` over `steps` steps of `dataset`."""

    def run(steps):
        clock = StepClock()
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[clock])
        return clock.seconds

    return run


def plain_loop(teacher, student, batch_size, latent_dim):
    """The baseline: a hand-written tf.function MSE step on fresh z."""
    optimizer = optimizers.default_optimizer()
    optimizer.build(student.trainable_variables)

    @tf.function
    def step():
        z = tf.random.normal((batch_size, latent_dim))
        target = teacher(z, training=False)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.cast(student(z, training=True), tf.float32) - tf.cast(target, tf.float32)))
        weights = student.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    def run(steps):
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        float(loss)  # Wait for the last step.
        return time.perf_counter() - start

    return run


def keras_distiller(teacher, student, dataset, latent_dim, steps_per_execution=1):
    """`keras.distillation.Distiller` (FeatureDistillation on the outputs, MSE), fed z."""
    def as_functional(generator):
        inputs = keras.Input((latent_dim,))
        return keras.Model(inputs, generator(inputs))

    distiller = keras.distillation.Distiller(
        as_functional(teacher),
        as_functional(student),
        distillation_losses=keras.distillation.FeatureDistillation(loss="mse"),
        student_loss_weight=0.0,
    )
    distiller.compile(optimizer=optimizers.default_optimizer(), loss="mse", steps_per_execution=steps_per_execution)
    return fit_runner(distiller, dataset)


def interleaved_rates(runners, steps, rounds, warmup=5):
    """Steps/s of each runner: warm-up, then `rounds` interleaved rounds; all values per runner."""
    for name, run in runners.items():
        run(warmup)  # Tracing and first allocations.
    rates = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            rates[name].append(steps[name] / run(steps[name]))
    return rates


def median(values):
    return statistics.median(values)


def write_results(path, settings, rows, **extra):
    """Writes the benchmark's JSON: settings, library versions, CPU count, extras, rows (NaN as null)."""
    import os

    from kd_gan._io import write_json

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    record = {"settings": settings, "tensorflow": tf.__version__, "keras": keras.__version__, "cpu_count": os.cpu_count()}
    write_json(path, {**record, **extra, "results": rows})
    print(f"Wrote {path}")
