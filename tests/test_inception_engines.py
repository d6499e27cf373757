"""The engines that run the FID Inception: which one `auto` picks, that their
statistics are named apart, and that they agree with TensorFlow's float32 pass."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kd_gan.errors import InputError
from kd_gan.evaluation import classifiers, inception_engines

from test_scoring import ROOT, _FakeInception, cifar10_set_a

AMX = frozenset({"amx_bf16", "avx512_bf16"})
needs_openvino = pytest.mark.skipif(not inception_engines.openvino_installed(), reason="openvino is not installed")


@pytest.mark.parametrize("asked, machine, expected", [
    (("auto", "auto"), dict(openvino=True, flags=AMX), ("openvino", "bfloat16")),
    (("auto", "auto"), dict(openvino=True, flags={"avx512_bf16", "avx512f"}), ("openvino", "bfloat16")),  # AVX512-BF16, no AMX.
    (("auto", "auto"), dict(openvino=True, flags={"avx512f", "avx2"}), ("openvino", "float32")),  # No bfloat16 units.
    (("auto", "auto"), dict(openvino=False, flags=AMX), ("tensorflow", "bfloat16")),
    (("auto", "auto"), dict(openvino=False, flags={"avx2"}), ("tensorflow", "float32")),
    (("auto", "auto"), dict(openvino=True, flags=AMX, has_gpu=True), ("tensorflow", "float32")),
    (("auto", "float32"), dict(openvino=True, flags=AMX), ("openvino", "float32")),
    (("tensorflow", "auto"), dict(openvino=True, flags=AMX), ("tensorflow", "bfloat16")),
    (("tensorflow", "bfloat16"), dict(openvino=True, flags=AMX), ("tensorflow", "bfloat16")),
    (("openvino", "auto"), dict(openvino=True, flags=AMX, has_gpu=True), ("openvino", "float32")),  # auto: float32 beside a GPU.
])
def test_auto_picks_the_pass_for_the_machine(asked, machine, expected):
    machine = {"has_gpu": False, **machine}
    assert inception_engines.choose(*asked, environment={}, **machine) == expected


def test_environment_fixes_what_auto_means_and_never_overrides_a_named_choice():
    machine = dict(has_gpu=False, flags=AMX, openvino=True)
    environment = {"KD_GAN_INCEPTION_ENGINE": "tensorflow", "KD_GAN_INCEPTION_PRECISION": "float32"}
    assert inception_engines.choose(environment=environment, **machine) == ("tensorflow", "float32")
    assert inception_engines.choose("openvino", "bfloat16", environment=environment, **machine) == ("openvino", "bfloat16")
    with pytest.raises(InputError, match="'onnx'"):
        inception_engines.choose(environment={"KD_GAN_INCEPTION_ENGINE": "onnx"}, **machine)


def test_impossible_choices_are_refused_by_name():
    with pytest.raises(InputError, match="pip install openvino"):
        inception_engines.choose("openvino", environment={}, openvino=False, has_gpu=False, flags=AMX)
    with pytest.raises(InputError, match="on a GPU"):
        inception_engines.choose("tensorflow", "bfloat16", environment={}, openvino=True, has_gpu=True, flags=AMX)
    with pytest.raises(InputError, match="'float16'"):
        inception_engines.choose("auto", "float16", environment={})


def test_every_pass_names_its_statistics_apart():
    names = {inception_engines.network_name("inception-abc", engine, precision)
             for engine in ("tensorflow", "openvino") for precision in ("float32", "bfloat16")}
    assert len(names) == 4
    # TensorFlow's passes keep the names their cached statistics were saved under.
    assert inception_engines.network_name("inception-abc", "tensorflow", "float32") == "inception-abc"
    assert inception_engines.network_name("inception-abc", "tensorflow", "bfloat16") == "inception-abc-bfloat16"


@pytest.fixture(scope="module")
def fake_inception(tmp_path_factory):
    path = tmp_path_factory.mktemp("fake_inception_engines") / "net"
    tf.saved_model.save(_FakeInception(True), str(path))
    return str(path)


@needs_openvino
def test_openvino_float32_gives_tensorflows_features(fake_inception):
    images = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
    reference = classifiers.InceptionClassifier(fake_inception, "float32", "tensorflow")
    openvino = classifiers.InceptionClassifier(fake_inception, "float32", "openvino")
    assert (openvino.engine, openvino.precision, openvino.has_logits) == ("openvino", "float32", True)
    assert openvino.name == f"{reference.name}-openvino-float32"
    for got, expected in zip(openvino(images), reference(images)):
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_an_engine_that_cannot_convert_falls_back_unless_named(fake_inception, monkeypatch):
    def refuse(folder, precision):
        raise RuntimeError("OpenVINO could not convert the Inception")

    monkeypatch.setattr(classifiers, "_openvino_network", refuse)
    monkeypatch.setattr(inception_engines, "openvino_installed", lambda: True)
    monkeypatch.delenv("KD_GAN_INCEPTION_ENGINE")
    fallback = classifiers.InceptionClassifier(fake_inception, "float32")
    assert fallback.engine == "tensorflow" and fallback.name == classifiers.InceptionClassifier(fake_inception, "float32", "tensorflow").name
    with pytest.raises(InputError, match="could not convert"):
        classifiers.InceptionClassifier(fake_inception, "float32", "openvino")


@needs_openvino
def test_shared_inception_under_openvino_is_close_to_tensorflow(shared_inception_path):
    images = np.random.default_rng(1).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    reference = classifiers.InceptionClassifier(shared_inception_path, "float32", "tensorflow")(images)[0]
    same = classifiers.InceptionClassifier(shared_inception_path, "float32", "openvino")(images)[0]
    np.testing.assert_allclose(same, reference, atol=1e-4)
    if inception_engines.precision_lib.has_bfloat16_units(inception_engines.precision_lib.cpu_flags()):
        fast = classifiers.InceptionClassifier(shared_inception_path, "bfloat16", "openvino")(images)[0]
        relative = np.mean(np.abs(fast - reference)) / np.mean(np.abs(reference))
        assert 1e-4 < relative < 0.1, relative  # Rounded in bfloat16 (not identical), and close.


@needs_openvino
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_openvino_reference_pair_fid_within_half_a_percent(shared_data_dir, shared_inception_path, tmp_path, precision):
    """FID(set A even, set A odd) through OpenVINO within 0.5% of 9.976 (TensorFlow float32: 9.9756)."""
    even, odd = cifar10_set_a(shared_data_dir, str(tmp_path))
    environment = {**os.environ, "KD_GAN_INCEPTION_ENGINE": "openvino", "KD_GAN_INCEPTION_PRECISION": precision}
    completed = subprocess.run(
        [sys.executable, "-m", "kd_gan.evaluate", f"--images={even}", f"--reference_images={odd}",
         f"--inception_path={shared_inception_path}", f"--output={tmp_path / 'fid.json'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, env=environment,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = json.loads((tmp_path / "fid.json").read_text())
    assert record["classifier"].endswith(f"openvino-{precision}")
    print(f"OpenVINO {precision}: FID(set A even, set A odd) = {record['fid']:.4f}")
    assert record["fid"] == pytest.approx(9.976, rel=0.005)
