"""Android snippet: written from a `.tflite` file's signatures; docs/DEPLOYMENT.md's copy is the generated text."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras
from kd_gan import Generator
from kd_gan.export import android
from kd_gan.export import converters as export
from kd_gan.models import tflite_generator as litert
from kd_gan.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def exported(folder, name, latent_dim, image_shape, quantization="none"):
    keras.utils.set_random_seed(0)
    path = str(folder / name)
    generator = Generator(latent_dim=latent_dim, image_shape=image_shape, depth=1)
    export.export_tflite(generator, path, quantization=quantization, verify=False)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("android")
    return {
        "mnist": exported(folder, "student_int8.tflite", 32, (28, 28, 1), quantization="int8"),
        "celeb_a": exported(folder, "celeb_a.tflite", 128, (64, 64, 3)),
    }


def documented_kotlin():
    """The ```kotlin block of docs/DEPLOYMENT.md's "### Android (LiteRT)" section."""
    with open(os.path.join(ROOT, "docs", "DEPLOYMENT.md")) as file:
        section = file.read().split("### Android (LiteRT)\n", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"^```kotlin\n(.*?)^```$", section, flags=re.S | re.M)
    assert len(blocks) == 1, f"expected one kotlin block in the Android section, found {len(blocks)}"
    return blocks[0]


@pytest.mark.parametrize("dataset, latent_dim, image_shape", [("mnist", 32, (28, 28, 1)), ("celeb_a", 128, (64, 64, 3))])
def test_signatures_report_what_the_file_runs(files, dataset, latent_dim, image_shape):
    found = android.signatures(files[dataset])
    assert found == {
        signature: {
            "inputs": {"z": {"shape": (1, latent_dim), "dtype": "float32"}},
            "outputs": {"image": {"shape": (1, *image_shape), "dtype": dtype}},
        }
        for signature, dtype in (("generate", "float32"), ("generate_uint8", "uint8"))
    }
    z = np.random.default_rng(0).standard_normal((1, latent_dim)).astype(np.float32)
    for signature, tensors in found.items():  # What the file returns when run, not only what it declares.
        images = litert.run_tflite(files[dataset], z, signature=signature)
        image = tensors["outputs"]["image"]
        assert (images.shape, images.dtype.name) == (image["shape"], image["dtype"])


@pytest.mark.parametrize("dataset, latent_dim, size, channels", [("mnist", 32, 28, 1), ("celeb_a", 128, 64, 3)])
def test_snippet_constants_and_names_come_from_the_file(files, dataset, latent_dim, size, channels):
    snippet = android.kotlin_snippet(files[dataset], asset_name="generator.tflite")
    assert re.findall(r"^const val (\w+) = (\d+)$", snippet, flags=re.M) == [
        ("LATENT_DIM", str(latent_dim)), ("SIZE", str(size)), ("CHANNELS", str(channels)),
    ]
    assert 'interpreter.runSignature(mapOf("z" to z), mapOf("image" to image), "generate_uint8")' in snippet
    assert 'context.assets.open("generator.tflite")' in snippet
    assert '"generate")' in snippet  # The float alternative, in a comment.
    assert android.kotlin_snippet(files[dataset]).count(os.path.basename(files[dataset])) == 2  # Default asset: the base name.


def test_file_without_the_uint8_signature_is_refused(tmp_path):
    class Sampler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="z")])
        def sample(self, z):
            return {"image": tf.reshape(tf.tile(z, [1, 2]), [1, 4, 4, 1])}

    sampler = Sampler()
    path = tmp_path / "sampler.tflite"
    converter = tf.lite.TFLiteConverter.from_concrete_functions([sampler.sample.get_concrete_function()], sampler)
    path.write_bytes(converter.convert())
    assert list(android.signatures(str(path))) == ["serving_default"]
    message = r"no 'generate_uint8' signature; the file has \['serving_default'\].*'generate' and 'generate_uint8'"
    with pytest.raises(InputError, match=message):
        android.kotlin_snippet(str(path))


def test_uint8_signature_with_float_output_is_refused(tmp_path):
    class Wrong(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="z")])
        def generate(self, z):
            return {"image": tf.reshape(tf.tile(z, [1, 2]), [1, 4, 4, 1])}

    module = Wrong()
    saved_model = str(tmp_path / "saved_model")
    function = module.generate.get_concrete_function()
    tf.saved_model.save(module, saved_model, signatures={"generate": function, "generate_uint8": function})
    path = tmp_path / "wrong.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(saved_model).convert())
    message = r"'generate_uint8' has input 'z': float32 \[1, 8\], output 'image': float32 \[1, 4, 4, 1\]; expected .* uint8"
    with pytest.raises(InputError, match=message):
        android.kotlin_snippet(str(path))


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="No .tflite file"):
        android.signatures(str(tmp_path / "absent.tflite"))


def test_documented_snippet_is_the_generated_one(files):
    # docs/DEPLOYMENT.md shows the snippet of a d=1 MNIST int8 file, latent_dim=32 (the MNIST presets' size).
    assert documented_kotlin() == android.kotlin_snippet(files["mnist"])


def test_command_line_writes_the_snippet(files, tmp_path):
    output = tmp_path / "Snippet.kt"
    subprocess.run(
        [sys.executable, "-m", "kd_gan.android", f"--tflite={files['mnist']}", f"--output={output}"],
        cwd=ROOT, check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert output.read_text() == android.kotlin_snippet(files["mnist"])
