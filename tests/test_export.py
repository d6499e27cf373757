"""Export: SavedModel and TFLite files match the Keras generator."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras
from kd_gan import Generator
from kd_gan.export import converters as export
from kd_gan.data import pixels as images

LATENT = 16


@pytest.fixture(scope="module")
def generator():
    keras.utils.set_random_seed(0)
    return Generator(LATENT, (28, 28, 1), 4)


@pytest.fixture(scope="module")
def tflite_files(generator, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tflite")
    return {
        quantization: export.export_tflite(generator, str(folder / f"g_{quantization}.tflite"), quantization=quantization)
        for quantization in export.QUANTIZATIONS
    }


def latents(count=8, seed=5):
    return np.random.default_rng(seed).standard_normal((count, LATENT)).astype(np.float32)


def keras_images(generator, z):
    return np.asarray(generator(z, training=False))


@pytest.mark.parametrize("quantization", export.QUANTIZATIONS)
def test_every_variant_loads_in_litert_with_the_documented_signatures(tflite_files, quantization):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=tflite_files[quantization]["path"])
    signatures = interpreter.get_signature_list()
    assert signatures[export.SIGNATURE] == {"inputs": ["z"], "outputs": ["image"]}
    assert signatures[export.UINT8_SIGNATURE] == {"inputs": ["z"], "outputs": ["image"]}
    runner = interpreter.get_signature_runner(export.SIGNATURE)
    assert runner.get_input_details()["z"]["dtype"] == np.float32
    output = runner(z=latents(1))["image"]
    assert output.shape == (1, 28, 28, 1) and output.dtype == np.float32


def test_fp32_matches_keras(generator, tflite_files):
    z = latents()
    np.testing.assert_allclose(export.run_tflite(tflite_files["none"]["path"], z), keras_images(generator, z), atol=1e-4)
    assert tflite_files["none"]["verification"]["max_abs_error"] <= 1e-4


def test_float16_within_its_tolerance(generator, tflite_files):
    # fp16 weights: about 3 decimal digits; images live in [-1, 1].
    z = latents()
    np.testing.assert_allclose(export.run_tflite(tflite_files["float16"]["path"], z), keras_images(generator, z), atol=2e-3)


@pytest.mark.parametrize("quantization", ["dynamic_int8", "int8"])
def test_int8_stays_in_range_and_follows_keras(generator, tflite_files, quantization):
    z = latents(16)
    actual, expected = export.run_tflite(tflite_files[quantization]["path"], z), keras_images(generator, z)
    assert actual.min() >= -1.0 and actual.max() <= 1.0
    assert np.corrcoef(actual.ravel(), expected.ravel())[0, 1] > 0.98
    assert np.abs(actual - expected).mean() < 0.01


def test_uint8_signature_matches_rounded_keras_output(generator, tflite_files):
    z = latents()
    expected = images.to_uint8(keras_images(generator, z)).astype(int)
    for quantization, tolerance in [("none", 0), ("float16", 1), ("int8", 3)]:
        actual = export.run_tflite(tflite_files[quantization]["path"], z, signature=export.UINT8_SIGNATURE)
        assert actual.dtype == np.uint8
        assert np.abs(actual.astype(int) - expected).max() <= tolerance, quantization


def test_file_sizes_shrink_with_quantization(tflite_files):
    sizes = {q: os.path.getsize(record["path"]) for q, record in tflite_files.items()}
    assert sizes["none"] > sizes["float16"] > sizes["int8"]
    assert sizes["none"] > sizes["float16"] > sizes["dynamic_int8"]
    assert all(sizes[q] == tflite_files[q]["bytes"] for q in sizes)


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def _builtin(model, operator):
    schema = _schema()
    code = model.operatorCodes[operator.opcodeIndex]
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    return names[max(code.builtinCode, code.deprecatedBuiltinCode)]


def _model(path):
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.read_model(path)


@pytest.mark.parametrize("quantization", export.QUANTIZATIONS)
def test_files_carry_no_tensor_names_but_keep_their_signature_names(tflite_files, quantization):
    model = _model(tflite_files[quantization]["path"])
    assert model.subgraphs and not any(tensor.name for subgraph in model.subgraphs for tensor in subgraph.tensors)
    assert sorted(signature.signatureKey for signature in model.signatureDefs) == [b"generate", b"generate_uint8"]
    assert {entry.name for signature in model.signatureDefs for entry in signature.inputs + signature.outputs} == {
        b"z", b"image"
    }


@pytest.mark.parametrize("quantization", export.QUANTIZATIONS)
def test_both_signatures_share_one_graph_with_no_empty_buffers_or_shape_copies(generator, tflite_files, quantization):
    from ai_edge_litert.interpreter import Interpreter

    path = tflite_files[quantization]["path"]
    model = _model(path)
    assert len(model.subgraphs) == 1 and [s.subgraphIndex for s in model.signatureDefs] == [0, 0]
    (graph,) = model.subgraphs
    outputs = {signature.signatureKey: signature.outputs[0].tensorIndex for signature in model.signatureDefs}
    assert sorted(graph.outputs) == sorted(outputs.values()) and len(set(outputs.values())) == 2
    tensors = graph.tensors
    assert all(tensor.shapeSignature is None for tensor in tensors)
    assert all(model.buffers[t.buffer].data is not None for t in tensors if t.buffer != 0)
    assert len(model.buffers) == 1 + len({t.buffer for t in tensors if t.buffer != 0}) + len(model.metadata)
    used = {int(i) for op in graph.operators for i in list(op.inputs) + list(op.outputs) if i >= 0}
    assert used | {int(i) for i in graph.inputs} == set(range(len(tensors)))
    assert {op.opcodeIndex for op in graph.operators} == set(range(len(model.operatorCodes)))
    (producer,) = [op for op in graph.operators if outputs[b"generate_uint8"] in op.outputs]
    if quantization == "int8":  # One requantization of the int8 tensor the float image is dequantized from.
        (dequantize,) = [op for op in graph.operators if outputs[b"generate"] in op.outputs]
        assert _builtin(model, producer) == "QUANTIZE" and _builtin(model, dequantize) == "DEQUANTIZE"
        assert list(producer.inputs) == list(dequantize.inputs) and tensors[producer.inputs[0]].type == _schema().TensorType.INT8
    else:
        assert _builtin(model, producer) == "CAST"
    # Each signature still returns its own output, whichever ran last.
    interpreter = Interpreter(model_path=path)
    z = latents(1)
    as_uint8 = interpreter.get_signature_runner(export.UINT8_SIGNATURE)(z=z)["image"]
    as_float = interpreter.get_signature_runner(export.SIGNATURE)(z=z)["image"]
    assert as_uint8.dtype == np.uint8 and as_float.dtype == np.float32
    np.testing.assert_allclose(images.to_uint8(as_float).astype(int), as_uint8.astype(int), atol=1 if "int8" in quantization else 0)


def test_uint8_conversion_clips_then_truncates_like_the_numpy_rounding():
    values = np.array([-2.0, -1.0, -0.999, -0.5, 0.0, 0.0039, 0.5, 0.996, 1.0, 3.0], np.float32)
    np.testing.assert_array_equal(export._to_uint8(values).numpy(), images.to_uint8(values))


def test_int8_projection_has_one_weight_scale_and_convolutions_one_per_channel(generator, tflite_files):
    from tensorflow.lite.python import schema_py_generated as schema

    model = _model(tflite_files["int8"]["path"])
    subgraph = model.subgraphs[0]
    dense, transposed = schema.BuiltinOperator.FULLY_CONNECTED, schema.BuiltinOperator.TRANSPOSE_CONV
    convolution = schema.BuiltinOperator.CONV_2D
    scales = {dense: [], transposed: [], convolution: []}
    for operator in subgraph.operators:
        code = model.operatorCodes[operator.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin in scales:  # Weights are input 1 of these ops; float32 weights have no scale.
            quantization = subgraph.tensors[operator.inputs[1]].quantization
            scales[builtin].append(len(quantization.scale) if quantization and quantization.scale is not None else 0)
    assert scales[dense] == [1]
    # Transposed convolutions ship as sub-pixel convolutions (weights
    # [4 phases x out, k, k, in]): one scale per phase of each output channel,
    # 4 x 2d (28x28x1, d = 4), then two in float32: 4 x d from 2d (1,152
    # weights, `tflite_graph.keeps_float_weights`) and the image's layer.
    assert scales[transposed] == []
    assert scales[convolution] == [32, 0, 0]


def test_verification_json_is_written_beside_the_file(tflite_files):
    for quantization, record in tflite_files.items():
        written = json.loads(open(record["path"] + ".verification.json").read())
        assert written == record["verification"]
        assert written["quantization"] == quantization


def test_fp32_mismatch_fails_loudly(generator, tflite_files):
    other = Generator(LATENT, (28, 28, 1), 4)  # different weights, same shapes
    with pytest.raises(export.VerificationError, match="max abs error .* above 0.0001"):
        export.verify_tflite(other, tflite_files["none"]["path"], quantization="none")


@pytest.mark.parametrize("quantization", ["float16", "dynamic_int8", "int8"])
def test_a_quantised_file_of_another_model_fails_its_tolerance(tflite_files, quantization):
    other = Generator(LATENT, (28, 28, 1), 4)  # Stands for a broken file: outputs unrelated to the model.
    with pytest.raises(export.VerificationError, match=quantization):
        export.verify_tflite(other, tflite_files[quantization]["path"], quantization=quantization)
    written = json.loads(open(tflite_files[quantization]["path"] + ".verification.json").read())
    assert written["passed"] is False


@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_a_file_whose_uint8_image_is_off_fails_verification(generator, tflite_files, quantization, tmp_path):
    from tensorflow.lite.tools import flatbuffer_utils

    model = _model(tflite_files[quantization]["path"])
    uint8 = next(s.outputs[0].tensorIndex for s in model.signatureDefs if s.signatureKey == b"generate_uint8")
    (producer,) = [op for op in model.subgraphs[0].operators if uint8 in op.outputs]
    if quantization == "int8":  # The requantization's zero point, moved by 20 levels.
        model.subgraphs[0].tensors[uint8].quantization.zeroPoint[:] = export.tflite_graph.UINT8_ZERO_POINT - 20
    else:  # The uint8 image cast from the float image itself, without the [0, 255] mapping.
        float_image = next(s.outputs[0].tensorIndex for s in model.signatureDefs if s.signatureKey == b"generate")
        producer.inputs[0] = float_image
    path = str(tmp_path / "broken.tflite")
    flatbuffer_utils.write_model(model, path)
    with pytest.raises(export.VerificationError, match="generate_uint8 is [0-9]+ levels from"):
        export.verify_tflite(generator, path, quantization=quantization)


def test_quantised_files_pass_their_tolerance_on_held_out_latents(generator, tflite_files, monkeypatch):
    for quantization, record in tflite_files.items():
        verification = record["verification"]
        assert verification["passed"] and verification["tolerance"] == {
            **export.TOLERANCES[quantization], "uint8_levels_from_own_image": export.UINT8_LEVELS
        }
        assert verification["uint8_levels_from_own_image"] <= export.UINT8_LEVELS
        assert verification["seed"] == [0, export.VERIFICATION_STREAM]
    # The z verification feeds the file are none of the int8 calibration draws.
    fed = []
    run = export.run_tflite
    monkeypatch.setattr(export, "run_tflite", lambda path, z, **kw: fed.append(np.array(z)) or run(path, z, **kw))
    export.verify_tflite(generator, tflite_files["int8"]["path"], quantization="int8")
    calibration = np.concatenate([batch["z"] for batch in export._representative_latents(LATENT, 1, 200, 0)])
    assert fed and all(len(z) == 32 for z in fed)
    distances = np.linalg.norm(fed[0][:, None] - calibration[None], axis=-1)
    assert distances.min() > 1.0


def test_unknown_quantization(generator, tmp_path):
    with pytest.raises(ValueError, match="'int4'"):
        export.export_tflite(generator, str(tmp_path / "g.tflite"), quantization="int4")
    with pytest.raises(ValueError, match="'onnx'"):
        export.export_generator(generator, str(tmp_path), formats=("onnx",))


def test_saved_model_round_trip(generator, tmp_path):
    path = export.export_saved_model(generator, str(tmp_path / "saved"))
    loaded = tf.saved_model.load(path)
    z = latents()
    np.testing.assert_allclose(loaded.signatures["generate"](z=tf.constant(z))["image"], keras_images(generator, z), atol=1e-6)
    uint8 = loaded.signatures["generate_uint8"](z=tf.constant(z))["image"].numpy()
    assert uint8.dtype == np.uint8
    assert np.abs(uint8.astype(int) - images.to_uint8(keras_images(generator, z)).astype(int)).max() <= 1


def test_export_command_line(generator, tmp_path):
    generator.save(tmp_path / "student.keras")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    completed = subprocess.run(
        [sys.executable, "-m", "kd_gan.export", f"--generator={tmp_path / 'student.keras'}",
         f"--output_dir={tmp_path / 'out'}", "--formats=tflite,saved_model", "--quantizations=none,float16"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "export.json").read_text())
    assert set(summary) == {"saved_model", "tflite_none", "tflite_float16"}
    assert os.path.isfile(tmp_path / "out" / "student.tflite")
    assert os.path.isfile(tmp_path / "out" / "student_float16.tflite")
    assert summary["tflite_none"]["verification"]["max_abs_error"] <= 1e-4


@pytest.mark.parametrize("name", ["student_mse+features_d1_generator", "_student", "+"])
def test_a_generator_whose_name_is_no_valid_scope_exports(generator, tmp_path, name):
    # "+" is refused in TensorFlow name scopes (student kinds such as "mse+features" had it),
    # and a root scope starts with a letter, digit or dot.
    named = Generator.from_config({**generator.get_config(), "name": name})
    named.set_weights(generator.get_weights())
    record = export.export_tflite(named, str(tmp_path / "g.tflite"))
    assert record["verification"]["passed"]
    np.testing.assert_allclose(export.run_tflite(record["path"], latents()), keras_images(generator, latents()), atol=1e-4)


# ---------------------------------------------------------------- LiteRT engines


@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_both_litert_engines_draw_the_same_images(tflite_files, quantization):
    from kd_gan.models.tflite_generator import TFLiteGenerator

    path = tflite_files[quantization]["path"]
    z = latents(4)
    xnnpack, builtin = TFLiteGenerator(path, engine="xnnpack"), TFLiteGenerator(path, engine="builtin")
    assert (xnnpack.engine, builtin.engine) == ("xnnpack", "builtin")
    # int8 kernels may round a requantization differently: one level of the output's 1/128 grid at most.
    np.testing.assert_allclose(xnnpack(z), builtin(z), atol=1e-5 if quantization == "none" else 2 / 128)


def test_auto_picks_the_engine_measured_faster(tflite_files, monkeypatch):
    from kd_gan.models import tflite_generator

    path = tflite_files["int8"]["path"]
    for faster, slower in (("builtin", "xnnpack"), ("xnnpack", "builtin")):
        tflite_generator._fastest.cache_clear()
        monkeypatch.setattr(tflite_generator, "_interleaved_medians",
                            lambda runners, calls, rounds, f=faster, s=slower: {f: 1e-5, s: 3e-5})
        assert tflite_generator.TFLiteGenerator(path).engine == faster
        assert tflite_generator.fastest_engine(path) == faster
    tflite_generator._fastest.cache_clear()


def test_latency_records_both_engines_and_the_cpu(tflite_files):
    from kd_gan.models.tflite_generator import measure_latency

    record = measure_latency(tflite_files["int8"]["path"], calls=5, rounds=1)
    assert set(record["latency_ms_by_engine"]) == {"xnnpack", "builtin"}
    assert record["latency_ms"] == min(record["latency_ms_by_engine"].values()) > 0
    assert record["latency_ms_by_engine"][record["latency_engine"]] == record["latency_ms"]
    assert {"vendor", "model", "flags", "cores"} <= set(record["cpu"])


def test_unknown_litert_engine_is_refused_by_name(tflite_files):
    from kd_gan.errors import InputError
    from kd_gan.models.tflite_generator import TFLiteGenerator

    with pytest.raises(InputError, match="'gpu'.*auto"):
        TFLiteGenerator(tflite_files["none"]["path"], engine="gpu")
