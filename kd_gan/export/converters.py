"""Ship a generator: SavedModel and verified TFLite files for phones.

Both formats expose the same signatures:

| signature        | input                      | output                                      |
|------------------|----------------------------|---------------------------------------------|
| `generate`       | `z`: float32 [batch, L]    | `image`: float32 [batch, H, W, C] in [-1, 1] |
| `generate_uint8` | `z`: float32 [batch, L]    | `image`: uint8 [batch, H, W, C] in [0, 255]  |

z is drawn from N(0, I), L is the generator's latent size. The SavedModel takes
any batch; a `.tflite` file has a fixed batch (1 by default, one image per call
on a phone). Every quantization keeps float32 input and output, so an app
calls all variants the same way; `int8` quantizes inside the model.

Command line, for a generator saved as `.keras`:

    python -m kd_gan.export --generator=runs/mnist_mse/student.keras \\
        --output_dir=export --formats=tflite,saved_model --quantizations=none,float16,int8
"""

import os
import re
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kd_gan.data import pixels as images_lib
from kd_gan.models import precision
from kd_gan.export import subpixel, tflite_graph
from kd_gan.models.any_generator import latent_size, load_generator
from kd_gan.models.tflite_generator import INPUT_NAME, OUTPUT_NAME, SIGNATURE, UINT8_SIGNATURE, TFLiteGenerator, run_tflite  # noqa: F401 (TFLiteGenerator re-exported)
from kd_gan._io import write_json
from kd_gan.errors import InputError

QUANTIZATIONS = ("none", "float16", "dynamic_int8", "int8")
FORMATS = ("tflite", "saved_model")
FP32_TOLERANCE = 1e-4  # Max abs error of an fp32 .tflite against Keras; more fails the export.
# What a file must reach against its Keras model on held-out z (outputs in
# [-1, 1]); a file that misses raises. fp32 and float16 are near-exact (fp16
# weights: ~1e-4 measured); int8 variants are judged by correlation and PSNR,
# since their error grows with the model's depth.
TOLERANCES = {
    "none": {"max_abs_error": FP32_TOLERANCE},
    "float16": {"max_abs_error": 1e-2},
    "dynamic_int8": {"min_correlation": 0.99, "min_psnr_db": 30.0},
    "int8": {"min_correlation": 0.98, "min_psnr_db": 25.0},
}
# Levels the `generate_uint8` image of a file may differ from its own float
# image in uint8 (`images.to_uint8`): rounding ties, and an int8 file's
# requantized image (`tflite_graph.UINT8_SCALE`); a wrong scale, zero point or
# source tensor is off by many.
UINT8_LEVELS = 1
# Relative difference allowed between the MNIST FID / score of an int8 file
# (scored through LiteRT) and of its Keras model (tests/test_scoring.py).
INT8_SCORE_TOLERANCE = 0.05
CALIBRATION_SAMPLES = 200  # Batches of z an int8 file's activation ranges are calibrated on.
# The one graph a `.tflite` file is converted from, and its uint8 output's name
# there; the file's two signatures share it (`tflite_graph.compact`).
_TFLITE_SIGNATURE = "generate_both"
_UINT8_OUTPUT = "image_uint8"
VERIFICATION_STREAM = 1  # Verification z come from rng([seed, 1]); calibration uses rng(seed): never the same draws.


def _to_uint8(images):
    """[-1, 1] -> uint8 [0, 255], rounding as `kd_gan.data.pixels.to_uint8` does.

    Clipped to [0, 255] first, the cast's truncation is the floor: one op
    fewer in a `.tflite` file than flooring, with the same values.
    """
    return tf.cast(tf.clip_by_value(images * 127.5 + 128.0, 0.0, 255.0), tf.uint8)


class _Serving(tf.Module):
    """The generator behind the two signatures, for one input batch size."""

    def __init__(self, generator, batch_size=None):
        super().__init__()
        self.generator = generator
        # Track the backing tf.Variables themselves: without them the TFLite
        # converter does not find a Keras 3 model's weights (its outputs were NaN).
        self.weights = [weight.value for weight in generator.weights]
        self.spec = tf.TensorSpec([batch_size, latent_size(generator)], tf.float32, name=INPUT_NAME)
        self.generate = tf.function(self._generate, input_signature=[self.spec])
        self.generate_uint8 = tf.function(self._generate_uint8, input_signature=[self.spec])

    def _generate(self, z):
        return {OUTPUT_NAME: tf.cast(self.generator(z, training=False), tf.float32)}

    def _generate_uint8(self, z):
        return {OUTPUT_NAME: _to_uint8(self._generate(z)[OUTPUT_NAME])}

    def generate_both(self, z):
        """Both images from one graph: what a `.tflite` file is converted from
        (traced in `export_tflite` only, so a SavedModel does not carry it)."""
        images = self._generate(z)[OUTPUT_NAME]
        return {OUTPUT_NAME: images, _UINT8_OUTPUT: _to_uint8(images)}

    def signatures(self):
        return {
            SIGNATURE: self.generate.get_concrete_function(),
            UINT8_SIGNATURE: self.generate_uint8.get_concrete_function(),
            "serving_default": self.generate.get_concrete_function(),
        }


def export_saved_model(generator, path, batch_size=None):
    """Writes `generator` as a SavedModel with the `generate` signatures.

    Args:
        generator: a Keras generator (z -> images in [-1, 1]).
        path: output directory.
        batch_size: fixed input batch, or None for any batch.

    Returns:
        `path`.

    Example:

    ```python
    export_saved_model(student, "student_savedmodel")
    generate = tf.saved_model.load("student_savedmodel").signatures["generate"]
    images = generate(z=tf.random.normal((4, 128)))["image"]
    ```
    """
    module = _Serving(_scope_safe(precision.float32_copy(generator)), batch_size)  # Trained in any precision, served in float32.
    tf.saved_model.save(module, path, signatures=module.signatures())
    return path


def calibration_latents(latent_dim, num_samples=CALIBRATION_SAMPLES, batch_size=1, seed=0):
    """The z an int8 file is calibrated on: `num_samples` batches from the
    prior, `default_rng(seed)`, shape (num_samples * batch_size, latent_dim)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((num_samples * batch_size, latent_dim)).astype(np.float32)


def _scope_safe(generator):
    """`generator`, or a copy under a name TensorFlow takes as a name scope.

    Tracing the signatures opens a scope named after the model; a name such as
    "student_mse+features_d1_generator" (files saved before student names were
    sanitised, or a user's model) fails there.
    """
    name = getattr(generator, "name", "")
    if not isinstance(generator, keras.Model) or re.fullmatch(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*", name):
        return generator
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", name)
    safe = safe if re.match(r"[A-Za-z0-9.]", safe) else f"generator{safe}"
    logging.info("Exporting %r as %r: TensorFlow takes no such name scope.", name, safe)
    renamed = generator.__class__.from_config({**generator.get_config(), "name": safe})
    renamed.set_weights(generator.get_weights())
    return renamed


def _representative_latents(latent_dim, batch_size, num_samples, seed):
    latents = calibration_latents(latent_dim, num_samples, batch_size, seed)
    for start in range(0, len(latents), batch_size):
        yield {INPUT_NAME: latents[start : start + batch_size]}


def _converter(saved_model_dir, generator, quantization, batch_size, representative_samples, seed):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[_TFLITE_SIGNATURE])
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic_int8":
        # Weights stored as int8; activations stay float (no calibration).
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        # Weights and activations int8, calibrated on latent vectors from the
        # prior, the generator's only input distribution.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # One scale for the projection's weights instead of one per output
        # unit: each unit's scale and zero point (12 bytes) are stored per
        # signature, 12 kB at d=8 (measured: 11% of the int8 file), and the
        # outputs match Keras as closely (PSNR within 0.4 dB on MNIST/CIFAR-10
        # students, docs/DEPLOYMENT.md).
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        latent_dim = latent_size(generator)
        converter.representative_dataset = lambda: _representative_latents(
            latent_dim, batch_size, representative_samples, seed
        )
    return converter


def _check_quantization(quantization):
    if quantization not in QUANTIZATIONS:
        raise InputError(f"Unknown quantization {quantization!r}; choose one of {QUANTIZATIONS}.")


def export_tflite(
    generator,
    path,
    quantization="none",
    batch_size=1,
    representative_samples=CALIBRATION_SAMPLES,
    seed=0,
    verify=True,
    sub_pixel=True,
    float_small_layers=True,
):
    """Converts `generator` to a `.tflite` file with the `generate` signatures.

    Args:
        generator: a Keras generator (z -> images in [-1, 1]).
        path: output `.tflite` file.
        quantization: "none" (fp32), "float16" (fp16 weights), "dynamic_int8"
            (int8 weights, float activations) or "int8" (int8 weights and
            activations, calibrated on `representative_samples` batches of z).
        batch_size: fixed input batch of the file.
        representative_samples: calibration batches for "int8".
        seed: seed of the calibration latents.
        verify: run `verify_tflite` and write its JSON beside the file.
        sub_pixel: write a kd_gan `Generator`'s transposed convolutions as
            sub-pixel convolutions (`kd_gan.export.subpixel`: the same images,
            and int8 files that XNNPACK runs at full speed); False converts
            the layers as they are. Other generators are converted as they are.
        float_small_layers: in an "int8" file, keep the last convolution and those of at most
            2,048 weights in float32, which XNNPACK runs faster (`tflite_graph.with_float_small_layers`).

    Returns:
        Dict: `path`, `quantization`, `bytes`, and the verification when run.

    Raises:
        ValueError: unknown quantization.
        VerificationError: the file misses its quantization's tolerance
            (`TOLERANCES`) against Keras on held-out z.
    """
    _check_quantization(quantization)
    generator = precision.float32_copy(generator)  # Trained in any precision, converted from float32.
    graph = _scope_safe(generator)
    if sub_pixel and subpixel.rewritable(graph):
        graph = subpixel.SubPixelGenerator(graph)
    with tempfile.TemporaryDirectory() as saved_model_dir:
        module = _Serving(graph, batch_size)
        both = tf.function(module.generate_both, input_signature=[module.spec]).get_concrete_function()
        tf.saved_model.save(module, saved_model_dir, signatures={_TFLITE_SIGNATURE: both})
        converter = _converter(saved_model_dir, generator, quantization, batch_size, representative_samples, seed)
        converted = converter.convert()
        if quantization == "int8" and float_small_layers:
            converted = tflite_graph.with_float_small_layers(
                converted, lambda: _converter(saved_model_dir, generator, quantization, batch_size, representative_samples, seed)
            )
        flatbuffer = tflite_graph.compact(converted, _UINT8_OUTPUT)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as file:
        file.write(flatbuffer)
    record = {"path": path, "quantization": quantization, "bytes": len(flatbuffer)}
    if verify:
        record["verification"] = verify_tflite(generator, path, quantization=quantization, seed=seed)
    return record


class VerificationError(RuntimeError):
    """A `.tflite` file does not reproduce its Keras model within its quantization's tolerance."""


def verify_tflite(generator, path, quantization="none", num_samples=32, seed=0):
    """Compares a `.tflite` generator with the Keras one on held-out z; raises when out of tolerance.

    The z are drawn from `np.random.default_rng([seed, VERIFICATION_STREAM])`,
    a stream apart from the int8 calibration latents (`default_rng(seed)`), so
    an int8 file is checked on inputs it was not calibrated on. Writes
    `<path>.verification.json` with max/mean absolute error (float output, in
    the [-1, 1] image range), PSNR, the correlation of the outputs, the
    largest uint8 pixel difference of `generate_uint8` from Keras and from the
    file's own float image, the tolerance and whether it passed.

    Raises:
        VerificationError: the file misses `TOLERANCES[quantization]`.
    """
    rng = np.random.default_rng([seed, VERIFICATION_STREAM])
    z = rng.standard_normal((num_samples, latent_size(generator))).astype(np.float32)
    expected = np.asarray(generator(z, training=False), np.float32)
    actual = run_tflite(path, z)
    actual_uint8 = run_tflite(path, z, signature=UINT8_SIGNATURE)
    error = np.abs(actual - expected)
    mse = float(np.mean(error**2))
    result = {
        "file": os.path.basename(path),
        "quantization": quantization,
        "num_samples": num_samples,
        "seed": [seed, VERIFICATION_STREAM],
        "max_abs_error": float(error.max()),
        "mean_abs_error": float(error.mean()),
        "psnr_db": float("inf") if mse == 0 else float(10 * np.log10(4.0 / mse)),
        "correlation": float(np.corrcoef(actual.ravel(), expected.ravel())[0, 1]),
        "output_range": [float(actual.min()), float(actual.max())],
        "uint8_max_abs_error": int(
            np.abs(actual_uint8.astype(np.int32) - images_lib.to_uint8(expected).astype(np.int32)).max()
        ),
        "uint8_levels_from_own_image": int(
            np.abs(actual_uint8.astype(np.int32) - images_lib.to_uint8(actual).astype(np.int32)).max()
        ),
        "tolerance": {**TOLERANCES[quantization], "uint8_levels_from_own_image": UINT8_LEVELS},
    }
    failures = _failures(result, result["tolerance"])
    result["passed"] = not failures
    # Identical outputs give an infinite PSNR, constant ones an undefined correlation: null in JSON.
    result.update({key: None for key in ("psnr_db", "correlation") if not np.isfinite(result[key])})
    write_json(f"{path}.verification.json", result)
    if failures:
        raise VerificationError(
            f"{path} ({quantization}) does not reproduce the Keras generator on held-out z: {'; '.join(failures)}."
        )
    logging.info(
        "Verified %s (%s): max abs error %.3g, PSNR %s dB, correlation %s", path, quantization,
        result["max_abs_error"], result["psnr_db"], result["correlation"],
    )
    return result


def _failures(result, tolerance):
    """Sentences naming each tolerance the result misses (NaN outputs miss every one)."""
    failures = []
    if "max_abs_error" in tolerance and not result["max_abs_error"] <= tolerance["max_abs_error"]:
        failures.append(f"max abs error {result['max_abs_error']:.3g} above {tolerance['max_abs_error']}")
    if "min_correlation" in tolerance and not result["correlation"] >= tolerance["min_correlation"]:
        failures.append(f"correlation {result['correlation']:.4f} below {tolerance['min_correlation']}")
    if "min_psnr_db" in tolerance and not result["psnr_db"] >= tolerance["min_psnr_db"]:
        failures.append(f"PSNR {result['psnr_db']:.1f} dB below {tolerance['min_psnr_db']} dB")
    if not result["uint8_levels_from_own_image"] <= tolerance["uint8_levels_from_own_image"]:
        failures.append(
            f"{UINT8_SIGNATURE} is {result['uint8_levels_from_own_image']} levels from the file's own float image "
            f"in uint8 (at most {tolerance['uint8_levels_from_own_image']})"
        )
    return failures


def export_generator(generator, output_dir, formats=("tflite",), quantizations=("none",), name="generator"):
    """Exports `generator` in each format (and each quantization for TFLite).

    Returns:
        Dict with one entry per file: `saved_model` and `tflite_<quantization>`.
    """
    for export_format in formats:
        if export_format not in FORMATS:
            raise InputError(f"Unknown export format {export_format!r}; choose from {FORMATS}.")
    for quantization in quantizations:
        _check_quantization(quantization)
    records = {}
    if "saved_model" in formats:
        path = export_saved_model(generator, os.path.join(output_dir, f"{name}_savedmodel"))
        records["saved_model"] = {"path": path, "bytes": _folder_bytes(path)}
    if "tflite" in formats:
        for quantization in quantizations:
            suffix = "" if quantization == "none" else f"_{quantization}"
            path = os.path.join(output_dir, f"{name}{suffix}.tflite")
            records[f"tflite_{quantization}"] = export_tflite(generator, path, quantization=quantization)
    return records


def _folder_bytes(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def main(argv):
    from absl import flags

    del argv
    flag_values = flags.FLAGS
    records = export_generator(
        load_generator(flag_values.generator),
        flag_values.output_dir,
        formats=flag_values.formats,
        quantizations=flag_values.quantizations,
        name=os.path.splitext(os.path.basename(flag_values.generator))[0],
    )
    summary_path = os.path.join(flag_values.output_dir, "export.json")
    write_json(summary_path, records)
    for key, record in records.items():
        error = record.get("verification", {}).get("max_abs_error")
        print(f"{key:<20} {record['bytes']:>10,} bytes" + (f"  max abs error {error:.3g}" if error is not None else ""))
    print(f"Wrote {summary_path}")


def define_flags():
    """The command's flags (defined only when it runs as a command)."""
    from absl import flags

    flags.DEFINE_string("generator", None, "Generator to export (.keras).", required=True)
    flags.DEFINE_string("output_dir", "export", "Output folder.")
    flags.DEFINE_list("formats", ["tflite"], f"Any of {', '.join(FORMATS)}.")
    flags.DEFINE_list("quantizations", ["none"], f"TFLite variants, any of {', '.join(QUANTIZATIONS)}.")


def cli():
    """Defines the flags, then runs `main`."""
    from absl import app

    define_flags()
    app.run(main)


if __name__ == "__main__":
    cli()
