"""The ML backend plugins TF and TFLITE with the documents' Keras CNN (the
Model guide's ``create_tf_cnn``) through their real runtimes (tensorflow-cpu,
the LiteRT interpreter: installed by scripts/setup.sh), serialized with
``simctl.ml.tf`` and ``simctl.ml.tflite``: results equal to Keras in-process,
batches, the names TF needs, bytes that are not a model, devices."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from _ml_models import KerasCnn, keras_cnn
from _paths import REPO

import simctl
from simctl.ml import read_model, tf as ml_tf, tflite as ml_tflite
from simctl.plugins.backends import tf as tf_plugin, tflite as tflite_plugin
from simctl.plugins.backends.tf import TfBackend
from simctl.plugins.backends.tflite import TfliteBackend

#: batches for the CNN: (n, 3, 3, 1)
X4 = np.random.default_rng(0).standard_normal((4, 3, 3, 1)).astype(np.float32)
X1 = X4[:1]


@pytest.fixture(scope="module")
def cnn() -> KerasCnn:
    """The guide's Keras CNN, built and serialized once for the module."""
    return keras_cnn()


def _keras(cnn: KerasCnn, x: np.ndarray) -> np.ndarray:
    """The CNN's output on ``x``, run in-process by Keras."""
    return np.asarray(cnn.keras_model(x))


# -- TF ------------------------------------------------------------------------------------


def test_serialize_model_gives_a_frozen_graph_and_its_names(cnn):
    assert isinstance(cnn.tf_bytes, bytes) and cnn.tf_bytes
    assert isinstance(cnn.inputs, list) and len(cnn.inputs) == 1 and isinstance(cnn.inputs[0], str)
    assert cnn.outputs == ["Identity"]
    assert not cnn.inputs[0].endswith(":0")  # op names, as the documents pass them


@pytest.mark.parametrize("x", [X1, X4], ids=["batch1", "batch4"])
def test_tf_runs_the_keras_cnn_like_keras(cnn, x):
    backend = TfBackend()
    handle = backend.load(cnn.tf_bytes, "CPU", inputs=cnn.inputs, outputs=cnn.outputs)
    (y,) = backend.run(handle, [x])
    assert isinstance(y, np.ndarray) and y.shape == (len(x), 1, 1, 1) and y.dtype == np.float32
    np.testing.assert_allclose(y, _keras(cnn, x), rtol=0, atol=1e-5)


def test_tf_takes_tensor_names_too_and_read_only_arrays(cnn):
    backend = TfBackend()
    handle = backend.load(cnn.tf_bytes, inputs=[f"{cnn.inputs[0]}:0"], outputs="Identity:0")
    x = np.frombuffer(X4.tobytes(), dtype=np.float32).reshape(X4.shape)  # read-only, as the store's
    assert not x.flags.writeable
    np.testing.assert_allclose(backend.run(handle, [x])[0], _keras(cnn, X4), rtol=0, atol=1e-5)


def test_freeze_model_writes_the_graph_to_a_file(cnn, tmp_path):
    path, inputs, outputs = ml_tf.freeze_model(cnn.keras_model, tmp_path / "models", "cnn.pb")
    assert path == str(tmp_path / "models" / "cnn.pb") and (inputs, outputs) == (cnn.inputs, cnn.outputs)
    backend = TfBackend()
    handle = backend.load(read_model(model_path=path), inputs=inputs, outputs=outputs)
    np.testing.assert_allclose(backend.run(handle, [X4])[0], _keras(cnn, X4), rtol=0, atol=1e-5)
    with pytest.raises(simctl.ConfigError, match="file_name must be a file name .*got 'a/b.pb'"):
        ml_tf.freeze_model(cnn.keras_model, tmp_path, "a/b.pb")
    (tmp_path / "file").write_text("")
    with pytest.raises(simctl.ConfigError, match="freeze_model cannot write .*file/cnn.pb"):
        ml_tf.freeze_model(cnn.keras_model, tmp_path / "file", "cnn.pb")


def test_tf_needs_inputs_and_outputs_and_lists_the_graphs_names(cnn):
    backend = TfBackend()
    with pytest.raises(simctl.ConfigError) as err:
        backend.load(cnn.tf_bytes, outputs=cnn.outputs)
    assert "backend 'TF' needs inputs=[...]" in str(err.value)
    assert f"this graph's placeholders are {cnn.inputs!r}" in str(err.value)
    with pytest.raises(simctl.ConfigError, match=r"needs outputs=\[...\].*unconsumed ops are \['Identity'\]"):
        backend.load(cnn.tf_bytes, inputs=cnn.inputs)
    with pytest.raises(simctl.ConfigError, match=r"inputs \['image'\]: the TF graph has no tensor 'image'; its placeh"):
        backend.load(cnn.tf_bytes, inputs=["image"], outputs=cnn.outputs)
    with pytest.raises(simctl.ConfigError, match=r"outputs \['Identity:1'\]: the TF graph has no tensor 'Identity:1'"):
        backend.load(cnn.tf_bytes, inputs=cnn.inputs, outputs=["Identity:1"])


def test_tf_run_errors_name_the_shapes_and_the_model_keeps_serving(cnn):
    backend = TfBackend()
    handle = backend.load(cnn.tf_bytes, inputs=cnn.inputs, outputs=cnn.outputs)
    with pytest.raises(simctl.ConfigError) as err:
        backend.run(handle, [np.zeros((4, 2, 2, 1), np.float32)])  # tensorflow itself would return garbage
    msg = str(err.value)
    assert msg.startswith(f"the TF model failed on inputs ({cnn.inputs[0]}:0: float32[4, 2, 2, 1])")
    assert "(4, 2, 2, 1)" in msg and "(None, 3, 3, 1)" in msg
    with pytest.raises(simctl.ConfigError, match=r"the TF model takes 1 input\(s\) .*; got 2"):
        backend.run(handle, [X4, X4])
    np.testing.assert_allclose(backend.run(handle, [X4])[0], _keras(cnn, X4), rtol=0, atol=1e-5)


def test_tf_rejects_a_graph_that_is_not_frozen():
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (None, 2), name="x")
        tf.identity(x * tf.compat.v1.Variable(2.0, name="w"), name="y")
    blob = graph.as_graph_def().SerializeToString()
    with pytest.raises(simctl.ConfigError, match=r"the graph is not frozen, it holds variables \['w'\]"):
        TfBackend().load(blob, inputs=["x"], outputs=["y"])


# -- TFLITE --------------------------------------------------------------------------------


def test_tflite_runs_the_same_network_like_keras_at_any_batch_size(cnn):
    backend = TfliteBackend()
    handle = backend.load(cnn.tflite_bytes, "CPU")
    assert list(handle.inputs) == ["input_0"] and list(handle.outputs) == ["output_0"]
    for x in (X1, X4, X1, X4[:3], X4):  # resized each time the batch changes, back and forth
        (y,) = backend.run(handle, [x])
        assert isinstance(y, np.ndarray) and y.shape == (len(x), 1, 1, 1) and y.dtype == np.float32
        np.testing.assert_allclose(y, _keras(cnn, x), rtol=0, atol=1e-5)


def test_tflite_output_is_not_overwritten_by_the_next_run(cnn):
    backend = TfliteBackend()
    handle = backend.load(cnn.tflite_bytes)
    first = backend.run(handle, [X4])[0]
    kept = first.copy()
    backend.run(handle, [-X4])
    np.testing.assert_array_equal(first, kept)


def test_tflite_run_errors_name_the_shapes_and_the_model_keeps_serving(cnn):
    backend = TfliteBackend()
    handle = backend.load(cnn.tflite_bytes)
    with pytest.raises(simctl.ConfigError, match=r"input 'input_0' takes float32\[\?, 3, 3, 1\]; "
                                                 r"got float32\[4, 2, 2, 1\]"):
        backend.run(handle, [np.zeros((4, 2, 2, 1), np.float32)])
    with pytest.raises(simctl.ConfigError, match=r"takes float32\[\?, 3, 3, 1\]; got float64\[4, 3, 3, 1\]"):
        backend.run(handle, [X4.astype(np.float64)])
    with pytest.raises(simctl.ConfigError, match=r"got float32\[3, 3, 1\]"):
        backend.run(handle, [X4[0]])
    with pytest.raises(simctl.ConfigError, match=r"the TFLITE model takes 1 input\(s\) \['input_0'\]; got 0"):
        backend.run(handle, [])
    np.testing.assert_allclose(backend.run(handle, [X4])[0], _keras(cnn, X4), rtol=0, atol=1e-5)


def test_tflite_resizes_a_fixed_batch_when_its_operations_allow_it():
    import keras
    import tensorflow as tf

    conv = keras.layers.Conv2D(1, 3)
    conv.build((None, 3, 3, 1))

    @tf.function(input_signature=[tf.TensorSpec((1, 3, 3, 1), tf.float32, name="img")])
    def batch_of_one(img):
        return conv(img)

    backend = TfliteBackend()
    handle = backend.load(ml_tflite.serialize_model(batch_of_one))
    assert handle.inputs["img"].signature == (1, 3, 3, 1)
    np.testing.assert_allclose(backend.run(handle, [X4])[0], np.asarray(conv(X4)), rtol=0, atol=1e-5)

    @tf.function(input_signature=[tf.TensorSpec((1, 9), tf.float32, name="v")])
    def fixed_reshape(v):
        return tf.reshape(v, (1, 3, 3)) * 2.0

    handle = backend.load(ml_tflite.serialize_model(fixed_reshape))
    with pytest.raises(simctl.ConfigError, match=r"failed on inputs \(v: float32\[4, 9\] \(the model's \[1, 9\]\)\)"):
        backend.run(handle, [np.ones((4, 9), np.float32)])
    np.testing.assert_array_equal(backend.run(handle, [np.ones((1, 9), np.float32)])[0], np.full((1, 3, 3), 2.0))


def test_tflite_is_safe_to_run_from_several_threads(cnn):
    backend = TfliteBackend()
    handle = backend.load(cnn.tflite_bytes)
    wrong: list[int] = []

    def worker(n: int) -> None:
        for _ in range(50):
            y = backend.run(handle, [X4[:n]])[0]
            if y.shape != (n, 1, 1, 1) or not np.allclose(y, _expected[n], rtol=0, atol=1e-5):
                wrong.append(n)

    _expected = {n: _keras(cnn, X4[:n]) for n in (1, 2, 3, 4)}
    threads = [threading.Thread(target=worker, args=(n,)) for n in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_tflite_picks_and_orders_inputs_and_outputs_by_name(cnn):
    backend = TfliteBackend()
    with pytest.raises(simctl.ConfigError, match=r"inputs \['x'\]: the TFLITE model has no 'x'; its inputs are "
                                                 r"\['input_0'\]"):
        backend.load(cnn.tflite_bytes, inputs=["x"])
    with pytest.raises(simctl.ConfigError, match=r"outputs \[\]: name at least one"):
        backend.load(cnn.tflite_bytes, outputs=[])
    handle = backend.load(cnn.tflite_bytes, inputs="input_0", outputs=["output_0"])
    np.testing.assert_allclose(backend.run(handle, [X1])[0], _keras(cnn, X1), rtol=0, atol=1e-5)


# -- several inputs and outputs, in the model's order --------------------------------------


@pytest.fixture(scope="module")
def three_by_three():
    """A Keras model with inputs zeta (n, 1), alpha (n, 2), mid (n, 3), in
    that order (not alphabetical), and three outputs."""
    import keras

    keras.utils.set_random_seed(1)
    ins = [keras.Input((i + 1,), name=name) for i, name in enumerate(["zeta", "alpha", "mid"])]
    both = keras.layers.Concatenate()(ins)
    model = keras.Model(ins, [keras.layers.Dense(2)(both) for _ in range(3)])
    xs = [np.random.default_rng(i).standard_normal((5, i + 1)).astype(np.float32) for i in range(3)]
    return model, xs, [np.asarray(y) for y in model(xs)]


def test_tf_feeds_and_fetches_by_name_in_the_order_given(three_by_three):
    model, xs, want = three_by_three
    blob, inputs, outputs = ml_tf.serialize_model(model)
    assert inputs == ["zeta", "alpha", "mid"] and outputs == ["Identity", "Identity_1", "Identity_2"]
    backend = TfBackend()
    for outs in (outputs, outputs[::-1], outputs[1:2]):
        got = backend.run(backend.load(blob, inputs=inputs, outputs=outs), xs)
        expected = [want[outputs.index(o)] for o in outs]
        assert len(got) == len(expected)
        for g, w in zip(got, expected):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)
    swapped = backend.load(blob, inputs=["alpha", "zeta", "mid"], outputs=outputs)
    np.testing.assert_allclose(backend.run(swapped, [xs[1], xs[0], xs[2]])[2], want[2], rtol=0, atol=1e-5)


def test_tflite_feeds_a_keras_models_inputs_in_its_order(three_by_three):
    model, xs, want = three_by_three
    backend = TfliteBackend()
    handle = backend.load(ml_tflite.serialize_model(model))
    assert list(handle.inputs) == ["input_0", "input_1", "input_2"]
    assert list(handle.outputs) == ["output_0", "output_1", "output_2"]
    for g, w in zip(backend.run(handle, xs), want):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)
    swapped = backend.load(ml_tflite.serialize_model(model), inputs=["input_1", "input_0", "input_2"],
                           outputs=["output_2"])
    (y,) = backend.run(swapped, [xs[1], xs[0], xs[2]])
    np.testing.assert_allclose(y, want[2], rtol=0, atol=1e-5)
    with pytest.raises(simctl.ConfigError, match="inputs .*: name each of the model's inputs once"):
        backend.load(ml_tflite.serialize_model(model), inputs=["input_0", "input_0", "input_2"])


def test_tf_functions_serialize_for_both_backends():
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32, name="v")])
    def double(v):
        return {"twice": v * 2.0}

    v = np.arange(6, dtype=np.float32).reshape(2, 3)
    blob, inputs, outputs = ml_tf.serialize_model(double)
    assert inputs == ["v"]
    backend = TfBackend()
    np.testing.assert_array_equal(backend.run(backend.load(blob, inputs=inputs, outputs=outputs), [v])[0], v * 2)
    concrete = double.get_concrete_function()
    lite = TfliteBackend()
    handle = lite.load(ml_tflite.serialize_model(concrete))
    assert list(handle.outputs) == ["output_0"]  # freezing flattens the dict of outputs
    np.testing.assert_array_equal(lite.run(handle, [v])[0], v * 2)


def test_serialization_helpers_say_what_they_take():
    import keras
    import tensorflow as tf

    for serialize in (ml_tf.serialize_model, ml_tflite.serialize_model):
        with pytest.raises(simctl.ConfigError, match="Keras model 'sequential.*' has no known inputs: build it on "
                                                     "keras.Input"):
            serialize(keras.Sequential([keras.layers.Dense(2)]))
        with pytest.raises(simctl.ConfigError, match="the tf.function given has no input_signature"):
            serialize(tf.function(lambda x: x))
        with pytest.raises(simctl.ConfigError, match="takes a Keras model built on keras.Input .*; got function"):
            serialize(lambda x: x)
        with pytest.raises(simctl.ConfigError, match="; got int"):
            serialize(3)


# -- bytes that are not a model, devices ----------------------------------------------------


@pytest.mark.parametrize("backend, what", [(TfBackend, "a TF frozen graph"), (TfliteBackend, "a TFLite model")])
def test_bytes_that_are_not_a_model_name_the_backend(cnn, backend, what):
    other = cnn.tflite_bytes if backend is TfBackend else cnn.tf_bytes  # the other backend's model
    for blob in (b"", b"not a model at all", other):
        with pytest.raises(simctl.ConfigError) as err:
            backend().load(blob, inputs=cnn.inputs if backend is TfBackend else None,
                           outputs=cnn.outputs if backend is TfBackend else None)
        assert f"backend '{backend.name}': the {len(blob)} bytes given are not {what}" in str(err.value)
    with pytest.raises(simctl.ConfigError, match=f"{backend.name} model must be bytes"):
        backend().load("cnn.pb")


@pytest.mark.parametrize("backend", [TfBackend, TfliteBackend])
def test_backends_check_the_device_before_loading(backend):
    with pytest.raises(simctl.ConfigError, match="device must be .*got 'GPU:one'"):
        backend().load(b"whatever", device="GPU:one")


def test_a_gpu_is_a_clear_error_on_the_cpu_runtimes(cnn):
    import tensorflow as tf

    with pytest.raises(simctl.ConfigError, match=r"device 'GPU:1': TFLITE runs on the CPU here"):
        TfliteBackend().load(cnn.tflite_bytes, device="GPU:1")
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this tensorflow sees a GPU")  # CI's is tensorflow-cpu: never skipped there
    with pytest.raises(simctl.ConfigError, match=r"device 'GPU': TensorFlow sees 0 GPU\(s\) here \(tensorflow-cpu"):
        TfBackend().load(cnn.tf_bytes, device="GPU", inputs=cnn.inputs, outputs=cnn.outputs)


# -- registration, and no runtime ------------------------------------------------------------


def test_each_backend_registers_from_its_own_module():
    assert tf_plugin.simctl_register_backends() == [TfBackend]
    assert tflite_plugin.simctl_register_backends() == [TfliteBackend]
    assert (TfBackend.name, TfBackend.requires, TfBackend.install_hint) == ("TF", ("tensorflow",), "simctl-hpc[tf]")
    assert (TfliteBackend.name, TfliteBackend.requires) == ("TFLITE", ("ai_edge_litert",))


@pytest.mark.parametrize("hidden, code, extra", [
    ("tensorflow", "from simctl.plugins.backends.tf import TfBackend as B; B().load(b'x', inputs=['x'])",
     "'simctl-hpc[tf]'"),
    ("ai_edge_litert", "from simctl.plugins.backends.tflite import TfliteBackend as B; B().load(b'x')",
     "'simctl-hpc[tflite]'"),
    ("tensorflow", "from simctl.ml.tf import serialize_model; serialize_model(None)", "'simctl-hpc[tf]'"),
    ("tensorflow", "from simctl.ml.tflite import serialize_model; serialize_model(None)", "'simctl-hpc[tf]'"),
])
def test_without_the_runtime_the_error_names_the_extra(hidden, code, extra):
    script = (f"import sys; sys.modules[{hidden!r}] = None\n"
              "import simctl\n"
              "try:\n"
              + "".join(f"    {line}\n" for line in code.split("; "))
              + "except simctl.ConfigError as e:\n"
              "    print(e)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"pip install {extra}" in proc.stdout and "does not import" in proc.stdout


def test_importing_the_helpers_imports_no_runtime():
    code = ("import sys\n"
            "import simctl.ml.tf, simctl.ml.tflite, simctl.plugins.backends.tf, simctl.plugins.backends.tflite\n"
            "import _ml_models\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'ai_edge_litert') if m in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
