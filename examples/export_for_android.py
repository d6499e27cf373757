"""Ship a generator to Android: an int8 `.tflite` file, verified, and the Kotlin that runs it.

Exports a generator (`.keras`, e.g. a student from `distil_your_generator.py`)
as float32 and int8 `.tflite` files. Each file is checked against the Keras
model on held-out z (the export raises when it misses its tolerance); the
int8 file then generates one image through LiteRT exactly as the app will,
and the Kotlin that loads and calls it is written from the file's own
signatures.

    python examples/export_for_android.py --generator=runs/distil_your_generator/student_mse.keras
    python examples/export_for_android.py --tiny   # an untrained tiny generator, seconds

Writes to `--output_dir`: `generator.tflite`, `generator_int8.tflite` (the one
to ship: `app/src/main/assets/`), their `.verification.json`, `Generator.kt`,
`sample.png` (what the app gets back) and `export.json`.
"""

import os

import numpy as np
from absl import app, flags

import kd_gan
from kd_gan import android, export, images, litert
from kd_gan.jsonio import write_json

flags.DEFINE_string("generator", None, "The generator to ship: .keras or SavedModel folder.")
flags.DEFINE_string("output_dir", "runs/export_for_android", "Where the files go.")
flags.DEFINE_boolean("tiny", False, "Export an untrained tiny generator instead (what the tests run).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if FLAGS.generator:
        generator = kd_gan.load_generator(FLAGS.generator)
    elif FLAGS.tiny:
        generator = kd_gan.Generator(latent_dim=8, image_shape=(28, 28, 1), depth=1)
    else:
        raise app.UsageError("Give --generator=PATH.keras (or --tiny).")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    record = {}
    for quantization, name in (("none", "generator.tflite"), ("int8", "generator_int8.tflite")):
        path = os.path.join(FLAGS.output_dir, name)
        # Raises export.VerificationError when the file does not reproduce the Keras model.
        exported = export.export_tflite(generator, path, quantization=quantization)
        check = exported["verification"]
        record[name] = {"bytes": exported["bytes"], "psnr_db": check["psnr_db"], "max_abs_error": check["max_abs_error"]}
        psnr = "exact" if check["psnr_db"] is None else f"{check['psnr_db']:.1f} dB"  # None: no difference at all.
        print(f"{name}: {exported['bytes']:,} bytes, PSNR to Keras {psnr}")

    # What the app feeds and reads: the file's own signatures.
    shipped = os.path.join(FLAGS.output_dir, "generator_int8.tflite")
    record["signatures"] = android.signatures(shipped)
    for signature, tensors in record["signatures"].items():
        print(f"{signature}: inputs {tensors['inputs']} -> outputs {tensors['outputs']}")

    # One image as the app gets it: z ~ N(0, I) in, uint8 pixels out.
    latent_dim = record["signatures"][litert.UINT8_SIGNATURE]["inputs"][litert.INPUT_NAME]["shape"][1]
    z = np.random.default_rng(0).standard_normal((1, latent_dim)).astype(np.float32)
    pixels = litert.run_tflite(shipped, z, signature=litert.UINT8_SIGNATURE)[0]
    images.save_png(pixels, os.path.join(FLAGS.output_dir, "sample.png"))

    kotlin = os.path.join(FLAGS.output_dir, "Generator.kt")
    with open(kotlin, "w") as file:
        file.write(android.kotlin_snippet(shipped))
    write_json(os.path.join(FLAGS.output_dir, "export.json"), record)
    print(f"Ship {shipped} (app/src/main/assets/) with {kotlin}; sample image: {FLAGS.output_dir}/sample.png")


if __name__ == "__main__":
    app.run(main)
