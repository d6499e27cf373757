"""Ship a generator to Android: an int8 `.tflite` file, verified, and the Kotlin that runs it.

Exports a generator (`.keras`, e.g. a student from `distil_your_generator.py`)
as float32 and int8 `.tflite` files. Each file is checked against the Keras
model on held-out z (the export raises when it misses its tolerance); the
int8 file then generates one image through LiteRT exactly as the app will,
and the Kotlin that loads and calls it is written from the file's own
signatures.

    python examples/export_for_android.py --generator=runs/distil_your_generator/student_mse.keras
    python examples/export_for_android.py --tiny   # a d=1 student of the kept CelebA teacher, seconds

Writes to `--output_dir`: `generator.tflite`, `generator_int8.tflite` (the one
to ship: `app/src/main/assets/`), their `.verification.json`, `Generator.kt`,
`sample.png` (what the app gets back) and `export.json`.
"""

import json
import os

import keras
import numpy as np
from absl import app, flags

import kd_gan
from kd_gan import export
from kd_gan.data import save_png
from kd_gan.models import run_tflite

flags.DEFINE_string("generator", None, "The generator to ship: .keras or SavedModel folder.")
flags.DEFINE_string("output_dir", "runs/export_for_android", "Where the files go.")
flags.DEFINE_boolean(
    "tiny", False,
    "Export a d=1 student distilled for 100 steps from the kept CelebA teacher instead of --generator (what the tests run).",
)
flags.DEFINE_integer("seed", 0, "Seed of the --tiny student's weights and latent draws.")
FLAGS = flags.FLAGS


def tiny_student(seed, steps=100):
    """A d=1 student of the kept CelebA teacher after `steps` MSE steps: small,
    yet with the faces' structure, which int8 must keep (an untrained generator
    draws near-constant images whose int8 file is judged on noise)."""
    keras.utils.set_random_seed(seed)
    teacher = kd_gan.pretrained("celeb_a_d32")
    latent_dim, image_shape = kd_gan.generator_shapes(teacher)
    student = kd_gan.Generator(latent_dim, image_shape, depth=1)
    distiller = kd_gan.Distiller(teacher, student, loss="mse", seed=seed)
    distiller.compile(student_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5))
    distiller.fit(kd_gan.latent_dataset(16, latent_dim, seed=seed), epochs=1, steps_per_epoch=steps, verbose=2)
    return student


def main(argv):
    del argv
    if bool(FLAGS.generator) == FLAGS.tiny:
        raise app.UsageError("Give one of --generator=PATH.keras and --tiny.")
    generator = kd_gan.load_generator(FLAGS.generator) if FLAGS.generator else tiny_student(FLAGS.seed)
    # Each file is checked against the Keras model on held-out z; a miss raises export.VerificationError.
    exported = export.export_generator(generator, FLAGS.output_dir, quantizations=("none", "int8"), name="generator")
    record = {}
    for key, file in exported.items():
        check, name = file["verification"], os.path.basename(file["path"])
        record[name] = {"bytes": file["bytes"], "psnr_db": check["psnr_db"], "max_abs_error": check["max_abs_error"]}
        psnr = "exact" if check["psnr_db"] is None else f"{check['psnr_db']:.1f} dB"  # None: no difference at all.
        print(f"{name}: {file['bytes']:,} bytes, PSNR to Keras {psnr}")

    # What the app feeds and reads: the file's own signatures.
    shipped = exported["tflite_int8"]["path"]
    record["signatures"] = export.signatures(shipped)
    for signature, tensors in record["signatures"].items():
        print(f"{signature}: inputs {tensors['inputs']} -> outputs {tensors['outputs']}")

    # One image as the app gets it: z ~ N(0, I) in, uint8 pixels out.
    latent_dim = record["signatures"][export.UINT8_SIGNATURE]["inputs"][export.INPUT_NAME]["shape"][1]
    z = np.random.default_rng(0).standard_normal((1, latent_dim)).astype(np.float32)
    pixels = run_tflite(shipped, z, signature=export.UINT8_SIGNATURE)[0]
    save_png(pixels, os.path.join(FLAGS.output_dir, "sample.png"))

    kotlin = os.path.join(FLAGS.output_dir, "Generator.kt")
    with open(kotlin, "w") as file:
        file.write(export.kotlin_snippet(shipped))
    with open(os.path.join(FLAGS.output_dir, "export.json"), "w") as file:
        json.dump(record, file, indent=2)
    print(f"Ship {shipped} (app/src/main/assets/) with {kotlin}; sample image: {FLAGS.output_dir}/sample.png")


if __name__ == "__main__":
    app.run(main)
