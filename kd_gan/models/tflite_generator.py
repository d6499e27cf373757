"""Running `.tflite` generators with LiteRT: the files `kd_gan.export` writes.

Their signatures (`generate`, `generate_uint8`) take `z` and return `image`.
"""

import os

import numpy as np

from kd_gan.errors import InputError

SIGNATURE = "generate"
UINT8_SIGNATURE = "generate_uint8"
INPUT_NAME = "z"
OUTPUT_NAME = "image"


def interpreter(path, num_threads=None):
    from ai_edge_litert.interpreter import Interpreter  # LiteRT: tf.lite.Interpreter is deprecated.

    return Interpreter(model_path=path, num_threads=num_threads)


def run_tflite(path, z, signature=SIGNATURE, num_threads=None):
    """Images of a `.tflite` generator for `z`, one file-sized batch at a time."""
    runner = interpreter(path, num_threads).get_signature_runner(signature)
    batch_size = runner.get_input_details()[INPUT_NAME]["shape"][0]
    z = np.asarray(z, np.float32)
    if len(z) % batch_size:
        raise InputError(f"The number of latent vectors ({len(z)}) must be a multiple of the file's batch {batch_size}.")
    return np.concatenate([runner(**{INPUT_NAME: z[i : i + batch_size]})[OUTPUT_NAME] for i in range(0, len(z), batch_size)])


class TFLiteGenerator:
    """A `.tflite` generator as a callable `z -> images`, run by LiteRT.

    Scores the file that ships to phones, not the Keras model it came from:
    `scoring.evaluate_generator(TFLiteGenerator("student_int8.tflite"), ...)`.
    Any number of z; they are run in batches of the file's fixed batch size
    (the last one padded).

    Args:
        path: a `.tflite` file with the `generate` signature (`export_tflite`).
        num_threads: LiteRT threads (None: its default).
    """

    def __init__(self, path, num_threads=None):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No .tflite generator file at {path!r}.")
        self.path = path
        self.name = os.path.basename(path)
        self._runner = interpreter(path, num_threads).get_signature_runner(SIGNATURE)
        shape = self._runner.get_input_details()[INPUT_NAME]["shape"]
        self.batch_size, self.latent_dim = int(shape[0]), int(shape[-1])

    def __call__(self, z):
        z = np.asarray(z, np.float32)
        count = len(z)
        padding = -count % self.batch_size
        if padding:
            z = np.concatenate([z, np.zeros((padding, self.latent_dim), np.float32)])
        outputs = [self._runner(**{INPUT_NAME: z[i : i + self.batch_size]})[OUTPUT_NAME] for i in range(0, len(z), self.batch_size)]
        return np.concatenate(outputs)[:count]
