"""Edits of a converted `.tflite` generator: its two signatures on one graph,
an int8 file's uint8 image in one op, its small convolutions in float32, and
nothing LiteRT does not need.

The TFLite converter turns one graph with both outputs (float32 and uint8
images, `kd_gan.export`) into a file; `compact` rewrites it as the file that
ships. Every exported file is then checked against its Keras model
(`export.verify_tflite`), so an edit that changed what the file computes fails
the export.
"""

import copy

import numpy as np
from absl import logging

from kd_gan import _compat
from kd_gan.models.tflite_generator import OUTPUT_NAME, SIGNATURE, UINT8_SIGNATURE

schema = _compat.tflite_schema()
flatbuffer_utils = _compat.tflite_flatbuffer_utils()

# The uint8 image of a tensor x in [-1, 1], as a quantized tensor:
# u = round(x * 127.5) + 128 (`export._to_uint8` floors x * 127.5 + 128; the
# two differ by at most one level).
UINT8_SCALE = 1.0 / 127.5
UINT8_ZERO_POINT = 128


def compact(flatbuffer, uint8_output):
    """The file that ships, from the converter's output.

    - `generate` and `generate_uint8` become two signatures on the one graph,
      each naming its own output "image" (`uint8_output`: the uint8 output's
      name in the converted graph). Converted as two signatures, the file held
      two copies of every tensor's and op's tables (2.5 kB, 11% of a d=2 MNIST
      int8 file); now a call computes both outputs.
    - The graph's outputs are the float image, then the uint8 image (as the
      signatures' order), for code that reads a plain interpreter's output 0.
    - In an int8 file, the uint8 image is one QUANTIZE op (int8 -> uint8) of
      the tensor the float image is dequantized from, instead of the
      converter's chain of int8 multiply, add, clipping, dequantize and cast
      (38 us of a 110 us call of a 64x64x3 d=2 generator).
    - Dropped: tensor and subgraph names and the description (the converter
      names each tensor after the ops fused into it; LiteRT runs a file by
      tensor index and apps reach it through the signatures, whose names stay),
      shape signatures equal to the fixed shapes, empty buffers of non-constant
      tensors (index 0 is the shared empty one), and the ops, tensors and
      operator codes no output needs (LiteRT resolves every operator code a
      file lists, used or not).
    """
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    (both,) = model.signatureDefs
    outputs = {_text(output.name): output for output in both.outputs}
    model.signatureDefs = []
    for key, output_name in ((SIGNATURE, OUTPUT_NAME), (UINT8_SIGNATURE, uint8_output)):
        signature = copy.deepcopy(both)
        signature.signatureKey = key
        signature.outputs = [copy.deepcopy(outputs[output_name])]
        signature.outputs[0].name = OUTPUT_NAME
        model.signatureDefs.append(signature)
    _float_image_first(model)
    if len(model.subgraphs) == 1:  # Files with control flow (more graphs) keep the converter's graph.
        _requantize_uint8_output(model)
        _drop_unused(model)
    model.description = None
    for subgraph in model.subgraphs:
        subgraph.name = None
        for tensor in subgraph.tensors:
            tensor.name = None
            if tensor.shapeSignature is not None and list(tensor.shapeSignature) == list(tensor.shape):
                tensor.shapeSignature = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


_CONVOLUTIONS = ("CONV_2D", "TRANSPOSE_CONV")
FLOAT_CONVOLUTION_MAX_WEIGHTS = 2048  # `keeps_float_weights`.


def keeps_float_weights(weight_count, last):
    """Whether an int8 file keeps a convolution of `weight_count` weights in float32.

    Measured one layer at a time through XNNPACK on an Intel Xeon with AMX
    (`benchmarks/probe_int8_layers.py`; 3x3 convolutions, 7x7 to 32x32
    pixels): an int8 convolution costs about the same at every width up to 32
    input channels (0.04 us a pixel), where a float32 one grows with its
    weights, so int8 is 2.4-7x slower than float32 up to 288 weights (4 input
    channels), 1.5x at 1,152 (8 -> 16 channels) and 1.4-7.7x faster from
    4,608 (16 -> 32). Convolutions of at most
    `FLOAT_CONVOLUTION_MAX_WEIGHTS` stay float32 (8 kB each at most), and so
    does the last one, which draws the image.
    """
    return last or weight_count <= FLOAT_CONVOLUTION_MAX_WEIGHTS


def with_float_small_layers(converted, make_converter):
    """The int8 file `converted` again, with its small convolutions in float32.

    The layers that draw the image have the generator's fewest channels and
    most pixels; XNNPACK's int8 kernels for them ran slower than float32 ones
    (`keeps_float_weights`; a 64x64x3 d=1 file: 0.062 ms a call all in int8,
    0.025 ms with its last layer in float32, docs/DEPLOYMENT.md), for a few
    hundred to two thousand weights each. Each float convolution's int8 input
    is dequantized before it and its output quantized after it, on the ranges
    calibrated as before, so `QuantizedView` needs only to leave its weights
    unrounded. Kept as converted where the graph has no convolution.
    """
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=converted)
    tensors = interpreter.get_tensor_details()
    convolutions = [op for op in interpreter._get_ops_details() if op["op_name"] in _CONVOLUTIONS]
    if not convolutions:
        return converted
    kept = [
        tensors[op["outputs"][0]]["name"] for k, op in enumerate(convolutions)
        # Weights are input 1 of CONV_2D and of TRANSPOSE_CONV alike.
        if keeps_float_weights(int(np.prod(tensors[op["inputs"][1]]["shape"])), last=k == len(convolutions) - 1)
    ]
    converter = make_converter()
    # Float kernels where asked for (the denylisted nodes), int8 everywhere else.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    # The public debugger calibrates the model as the converter does; quantized
    # here with the converter's per-tensor dense option, which it would drop.
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=converter.representative_dataset,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=kept),
    )
    mixed = _compat.tflite_quantize_calibrated(debugger.calibrated_model, kept, per_tensor_dense_layers=True)
    # Float kernels were allowed for the denylisted nodes only: anything else in float keeps the all-int8 file.
    interpreter = Interpreter(model_content=mixed)
    tensors = interpreter.get_tensor_details()
    in_float = [op["op_name"] for op in interpreter._get_ops_details()
                if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE") and tensors[op["outputs"][0]]["dtype"] == np.float32]
    if len(in_float) != len(kept) or set(in_float) - set(_CONVOLUTIONS):
        logging.warning("Keeping the all-int8 file: quantized with float small layers, %s ran in float32.", in_float)
        return converted
    return mixed


def _float_image_first(model):
    """Orders the main graph's outputs as the signatures are: the float image first.

    Code that runs a plain `Interpreter` and reads `get_output_details()[0]`
    (older Android snippets, `interpreter.run(z, image)`) gets the float
    image, as the `generate` signature does; the uint8 image is output 1.
    """
    graph = model.subgraphs[0]
    first = [signature.outputs[0].tensorIndex for signature in model.signatureDefs]
    graph.outputs = np.array(first + [int(i) for i in graph.outputs if int(i) not in first], np.int32)


def _code_builtin(code):
    return max(code.builtinCode, code.deprecatedBuiltinCode)  # Codes above 127 are only in the newer field.


def _builtin(model, operator):
    return _code_builtin(model.operatorCodes[operator.opcodeIndex])


def _opcode_index(model, builtin, version):
    for index, code in enumerate(model.operatorCodes):
        if _code_builtin(code) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _requantize_uint8_output(model):
    """In an int8 file (float image = DEQUANTIZE of an int8 tensor), the uint8
    image becomes QUANTIZE(int8 -> uint8) of that tensor; other files are left
    as converted."""
    graph = model.subgraphs[0]
    float_index, uint8_index = (signature.outputs[0].tensorIndex for signature in model.signatureDefs)
    producer = next((op for op in graph.operators if float_index in op.outputs), None)
    if producer is None or _builtin(model, producer) != schema.BuiltinOperator.DEQUANTIZE:
        return
    source = producer.inputs[0]
    if graph.tensors[source].type != schema.TensorType.INT8:
        return
    image = graph.tensors[uint8_index]
    image.quantization = schema.QuantizationParametersT()
    image.quantization.scale = np.array([UINT8_SCALE], np.float32)
    image.quantization.zeroPoint = np.array([UINT8_ZERO_POINT], np.int64)
    requantize = schema.OperatorT()
    # Version 1 runs int8 -> uint8 (op_version.cc: 2 is for int16 outputs).
    requantize.opcodeIndex = _opcode_index(model, schema.BuiltinOperator.QUANTIZE, version=1)
    requantize.inputs, requantize.outputs = np.array([source], np.int32), np.array([uint8_index], np.int32)
    graph.operators = [op for op in graph.operators if uint8_index not in op.outputs] + [requantize]


def _drop_unused(model):
    """Removes ops no output needs, then the tensors, buffers and operator
    codes nothing uses, and renumbers what is left."""
    graph = model.subgraphs[0]
    needed = set(int(i) for i in graph.outputs)
    kept_ops = []
    for op in reversed(graph.operators):  # The converter writes ops in execution order.
        if needed & set(int(i) for i in op.outputs):
            kept_ops.append(op)
            tensors = list(op.inputs) + list(op.outputs) + list(op.intermediates if op.intermediates is not None else [])
            needed |= {int(i) for i in tensors if i >= 0}
    graph.operators = kept_ops[::-1]
    codes = _renumbering({op.opcodeIndex for op in graph.operators})
    model.operatorCodes = [model.operatorCodes[old] for old in codes]
    for op in graph.operators:
        op.opcodeIndex = codes[op.opcodeIndex]
    index = _renumbering(needed | {int(i) for i in graph.inputs})
    graph.tensors = [graph.tensors[old] for old in index]

    def renumber(indices):
        return np.array([index[int(i)] if i >= 0 else -1 for i in indices], np.int32)

    graph.inputs, graph.outputs = renumber(graph.inputs), renumber(graph.outputs)
    for op in graph.operators:
        op.inputs, op.outputs = renumber(op.inputs), renumber(op.outputs)
        if op.intermediates is not None:
            op.intermediates = renumber(op.intermediates)
    for signature in model.signatureDefs:
        for entry in signature.inputs + signature.outputs:
            entry.tensorIndex = index[entry.tensorIndex]
    for tensor in graph.tensors:
        if not _buffer_bytes(model.buffers[tensor.buffer]):
            tensor.buffer = 0
    buffers = _renumbering({0} | {t.buffer for t in graph.tensors} | {m.buffer for m in model.metadata or []})
    model.buffers = [model.buffers[old] for old in buffers]
    for tensor in graph.tensors:
        tensor.buffer = buffers[tensor.buffer]
    for metadata in model.metadata or []:
        metadata.buffer = buffers[metadata.buffer]


def _renumbering(kept):
    """`{old index: new index}` for the indices `kept`, in their order (a dict iterates its old indices in order)."""
    return {old: new for new, old in enumerate(sorted(kept))}


def _text(name):
    return name.decode() if isinstance(name, bytes) else name


def _buffer_bytes(buffer):
    if getattr(buffer, "offset", 0):  # Data stored after the flatbuffer (files over 2 GB).
        return buffer.size
    return 0 if buffer.data is None else len(buffer.data)
