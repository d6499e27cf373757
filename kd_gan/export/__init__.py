"""Shipping a generator: SavedModel and `.tflite` files verified against Keras
(`converters`), the `.tflite` graph edits, quantization-aware fine-tuning
(`QuantizedView`) and the Kotlin for Android. `python -m kd_gan.export`."""

from kd_gan.models.tflite_generator import INPUT_NAME, OUTPUT_NAME, SIGNATURE, UINT8_SIGNATURE, TFLiteGenerator
from kd_gan.export.converters import (
    FORMATS,
    QUANTIZATIONS,
    VerificationError,
    export_generator,
    export_saved_model,
    export_tflite,
    verify_tflite,
)
from kd_gan.export.quantization import QuantizedView
from kd_gan.export.android import kotlin_snippet, signatures

__all__ = [
    "FORMATS",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "SIGNATURE",
    "UINT8_SIGNATURE",
    "QUANTIZATIONS",
    "QuantizedView",
    "TFLiteGenerator",
    "VerificationError",
    "export_generator",
    "export_saved_model",
    "export_tflite",
    "kotlin_snippet",
    "signatures",
    "verify_tflite",
]
