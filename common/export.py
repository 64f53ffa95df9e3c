"""Export a trained model to SavedModel, ONNX and LiteRT (float32 and INT8), and run any
of them, or a `.keras` file, through one interface.

    files = export_model(model, "runs/demo/export", ["onnx", "onnx_int8"], representative=images)
    runner = load_inference_model("runs/demo/export/model.onnx")
    outputs = runner.predict_on_batch(uint8_images)   # {"keypoints": ..., "confidence": ...}

Every model of the package takes raw uint8 images (its preprocessing is a layer inside
it), so every exported file does too: the SavedModel's `serving_default` signature, the
ONNX graph and the `.tflite` files all take (batch, H, W, C) uint8 and return the model's
named float32 outputs.

Conversion goes through Keras' own `model.export` (TensorFlow backend): `tf_saved_model`;
`onnx` (Keras drives tf2onnx); LiteRT from that SavedModel by the TFLite converter with
the settings of Keras' `litert` export (which converts from a SavedModel too; one
SavedModel for all three saves two traces of the model). The INT8 files keep the uint8
input and the float32 outputs, so the same arrays go in and come out.

The decoding head stays in float (`float_head`): a heatmap model's keypoints and peak
heights come from a SoftArgMax (softmax of beta * sigmoid(logits), beta ~15) and a max
over the maps, which int8 cannot carry (one int8 step of the probabilities is a large
step of exp(beta * p); measured on a trained stage-2 ResNet-18: 25 px with the head in
int8). So an INT8 file is the network up to the raw heatmaps, and
`model_int8.float_head.json` beside it (one for both INT8 files) says how the runner
decodes them in numpy, in float, into the model's other outputs: every format returns
the same named outputs.

Two INT8 files, both calibrated on the representative images:
- `onnx_int8` (`model_int8.onnx`): ONNX Runtime's static quantisation of the ONNX body
  (QDQ, int8 weights per output channel, uint8 activations per tensor, min-max ranges;
  ops other than convolutions and products stay float). On a trained stage-2 ResNet-18:
  0.05 px from float32 Keras at 2.2-2.5x its speed on two cores (bench/README.md). On an
  x86 CPU without AVX-512 VNNI, ONNX Runtime's uint8 x int8 products can saturate
  (its documentation's "reduce_range" note): quantise on and for such a machine with care.
- `litert_int8` (`model_int8.tflite`): the TFLite converter's full-integer quantisation,
  every op in int8 (for integer-only accelerators). Its int8 activations cost accuracy:
  5.1 px on the same ResNet-18 with 64 or 384 calibration images alike (int16 activations
  with the same int8 weights, which this module does not export: 0.06 px).

Running needs only the runtime of the format: TensorFlow for a SavedModel, ONNX Runtime
for `.onnx`, the LiteRT interpreter (`ai-edge-litert`) for `.tflite`; this module imports
neither Keras nor TensorFlow for the last two, so a deployment machine needs neither.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from common.errors import DataError

# format -> file (or folder) name written into the output folder.
FILE_NAMES = {"saved_model": "saved_model", "onnx": "model.onnx", "onnx_int8": "model_int8.onnx",
              "litert": "model.tflite", "litert_int8": "model_int8.tflite"}
INT8_FORMATS = ("onnx_int8", "litert_int8")
FORMATS = tuple(FILE_NAMES)
# Beside an INT8 file (its name with this in place of `.onnx` or `.tflite`): the float head.
FLOAT_HEAD_SUFFIX = ".float_head.json"


def parse_formats(text):
    """`all` or a comma-separated list of FORMATS -> a tuple of formats."""
    if text == "all":
        return FORMATS
    formats = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [f for f in formats if f not in FILE_NAMES]
    if bad or not formats:
        raise DataError(f"unknown format {', '.join(bad) or repr(text)} (one of {', '.join(FORMATS)}, or all)",
                        "--format")
    return formats


def export_model(model, output_dir, formats=FORMATS, representative=None, verbose=False):
    """Write `model` in each of `formats` into `output_dir` (names: FILE_NAMES).

    representative: (N, H, W, C) uint8 images for INT8 calibration (a few dozen from the
    training cache suffice); required for the INT8_FORMATS.
    Each file is written beside its final name and renamed when complete, so an
    interrupted export leaves no half-written model. Returns {format: path}.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        raise DataError(f"export runs on the TensorFlow backend, not {keras.backend.backend()} "
                        "(unset KERAS_BACKEND or set it to tensorflow)", "KERAS_BACKEND")
    int8 = [fmt for fmt in formats if fmt in INT8_FORMATS]
    if int8 and (representative is None or len(representative) == 0):
        raise ValueError(f"{int8[0]} needs representative images for calibration. Received: representative=None")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    work = Path(tempfile.mkdtemp(prefix=".export.", dir=output_dir))
    try:
        # One SavedModel serves the SavedModel format and both LiteRT conversions, as
        # Keras' own LiteRT export converts from a SavedModel it writes: each trace of
        # the model costs tens of seconds on two cores.
        saved_model = None
        if {"saved_model", "litert", "litert_int8"} & set(formats):
            saved_model = work / FILE_NAMES["saved_model"]
            # Keras' endpoint: `serve`, and `serving_default` with the input's name
            # (`images`), uint8 as the model's Input declares it.
            model.export(saved_model, format="tf_saved_model", verbose=verbose)
        for fmt in formats:
            final = output_dir / FILE_NAMES[fmt]
            head_file = final.with_name(final.stem + FLOAT_HEAD_SUFFIX)
            head = None
            if fmt == "saved_model":
                target = work / "saved_model_copy"
                shutil.copytree(saved_model, target)
            else:
                target = work / final.name
                if fmt == "onnx":
                    _call_once(model)
                    model.export(target, format="onnx", verbose=verbose)
                elif fmt == "litert":
                    target.write_bytes(_litert(saved_model))
                elif fmt == "onnx_int8":
                    head = float_head(model)
                    body = _body(model, head)
                    _call_once(body)
                    source = work / "int8_body.onnx"
                    body.export(source, format="onnx", verbose=verbose)
                    _onnx_int8(source, target, representative)
                else:
                    head = float_head(model)
                    source = saved_model
                    if head is not None:  # the network up to the raw heatmaps: one more trace
                        source = work / "int8_body"
                        _body(model, head).export(source, format="tf_saved_model", verbose=verbose)
                    target.write_bytes(_litert(source, representative))
            if final.is_dir():
                shutil.rmtree(final)
            # The head description first: a runner never sees a new body with an old head.
            if head is not None:
                (work / head_file.name).write_text(json.dumps(head, indent=1))
                os.replace(work / head_file.name, head_file)
            elif head_file.exists():
                head_file.unlink()
            os.replace(target, final)
            written[fmt] = final
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return written



def _call_once(model):
    """Keras' ONNX export refuses a model that was never called ("The model provided has
    never called"), as one just loaded from a .keras file is: one call on a blank batch
    (sizes left open by the model: 32)."""
    blank = [np.zeros([1] + [size or 32 for size in tensor.shape[1:]], dtype=tensor.dtype) for tensor in model.inputs]
    model(blank[0] if len(blank) == 1 else blank, training=False)


def _body(model, head):
    """The network up to the raw output the float head decodes (the model itself without a head)."""
    import keras

    return model if head is None else keras.Model(model.input, {head["input"]: model.output[head["input"]]})


def _onnx_int8(source, target, representative):
    """ONNX Runtime's static INT8 quantisation of the ONNX file `source` into `target`,
    calibrated one representative image at a time (min-max ranges)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = source.with_name(source.stem + ".prepared.onnx")
    # Shape inference and constant folding, as ONNX Runtime advises before quantising
    # (the symbolic pass wants sympy; the graph's shapes are static but for the batch).
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
    images = np.asarray(representative)

    class Images(CalibrationDataReader):
        def __init__(self):
            self._feeds = iter({name: image[None]} for image in images)

        def get_next(self):
            return next(self._feeds, None)

    quantize_static(str(prepared), str(target), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)


def _litert(saved_model, representative=None):
    """A `.tflite` flatbuffer from a SavedModel, with the converter settings of Keras'
    `export(format="litert")`; INT8 when `representative` images are given."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.experimental_enable_resource_variables = True
    if representative is None:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        return converter.convert()
    images = np.asarray(representative)

    def samples():  # one image per calibration step: the converter's documented form
        for image in images:
            yield [image[None]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    # INT8 builtins only: the converter fails rather than leave an op in float.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def float_head(model):
    """The decoding head that INT8 keeps in float, or None when the model has none.

    A head: one raw model output (the heatmap logits, e.g. `heatmap_logits`) from which
    every other output is computed by a `SoftArgMax` or `HeatmapPeak` layer, on it or on
    its sigmoid. Returns {"input": raw output name, "outputs": {output name: {"op":
    "soft_argmax" or "peak", "activation": "sigmoid" or None, "beta", "debias"}}}, JSON-able.
    """
    from keras import layers

    from common.layers import HeatmapPeak, SoftArgMax

    if not isinstance(model.output, dict):
        return None
    producers = {}
    for layer in model.layers:
        try:
            producers[id(layer.output)] = layer
        except (AttributeError, ValueError):  # a layer called more than once has no single output
            continue
    raw = {id(t): name for name, t in model.output.items()
           if not isinstance(producers.get(id(t)), (SoftArgMax, HeatmapPeak))}
    outputs = {}
    for name, tensor in model.output.items():
        layer = producers.get(id(tensor))
        if not isinstance(layer, (SoftArgMax, HeatmapPeak)):
            continue
        source, activation = layer.input, None
        before = producers.get(id(source))
        if isinstance(before, layers.Activation) and before.get_config()["activation"] == "sigmoid":
            source, activation = before.input, "sigmoid"
        if id(source) not in raw:
            return None  # decoded from something that is not a raw output: no float head to split off
        spec = {"input": raw[id(source)], "op": "soft_argmax" if isinstance(layer, SoftArgMax) else "peak",
                "activation": activation}
        if isinstance(layer, SoftArgMax):
            spec.update(beta=layer.beta, debias=layer.debias)
        outputs[name] = spec
    inputs = {spec.pop("input") for spec in outputs.values()}
    if len(inputs) != 1 or len(raw) != 1:
        return None
    return {"input": inputs.pop(), "outputs": outputs}


def sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))


def soft_argmax_numpy(heatmaps, beta, debias=False):
    """`common.layers.soft_argmax` in numpy (float64 inside, float32 out): (B, H, W, K) -> (B, K, 2)."""
    heatmaps = np.asarray(heatmaps, np.float64)
    batch, height, width, count = heatmaps.shape
    logits = beta * heatmaps.reshape(batch, height * width, count)
    peak = logits.max(axis=1, keepdims=True)
    weights = np.exp(logits - peak)
    total = weights.sum(axis=1, keepdims=True)
    probs = weights / total
    flat = np.arange(height * width)
    x_centres = (flat % width + 0.5) / width
    y_centres = (flat // width + 0.5) / height
    xy = np.stack([(probs * x_centres[None, :, None]).sum(axis=1),
                   (probs * y_centres[None, :, None]).sum(axis=1)], axis=-1)
    if debias:
        log_ratio = np.log(height * width) - peak[:, 0] - np.log(total[:, 0])
        ratio = np.exp(np.minimum(log_ratio, 0.0))[..., None]
        denom = 1.0 - ratio
        valid = denom > 1e-6
        xy = np.where(valid, (xy - 0.5 * ratio) / np.where(valid, denom, 1.0), xy)
    return xy.astype(np.float32)


def apply_float_head(head, outputs):
    """The head's outputs from `outputs[head["input"]]` (raw heatmaps), added to `outputs`."""
    raw = np.asarray(outputs[head["input"]], np.float32)
    activated = {}
    for name, spec in head["outputs"].items():
        if spec["activation"] not in activated:
            activated[spec["activation"]] = sigmoid(raw) if spec["activation"] == "sigmoid" else raw
        maps = activated[spec["activation"]]
        if spec["op"] == "soft_argmax":
            outputs[name] = soft_argmax_numpy(maps, spec["beta"], spec["debias"])
        else:
            outputs[name] = maps.max(axis=(1, 2)).astype(np.float32)
    return outputs


# --- running a model from any of its files ---

def read_float_head(path, output_shapes):
    """The float head beside the INT8 file `path` (None when there is none); adds the
    shapes of its outputs to `output_shapes`."""
    head_file = path.with_name(path.stem + FLOAT_HEAD_SUFFIX)
    if not head_file.is_file():
        return None
    try:
        head = json.loads(head_file.read_text())
        shape = output_shapes[head["input"]]  # (h, w, K)
        for name, spec in head["outputs"].items():
            output_shapes[name] = (shape[-1], 2) if spec["op"] == "soft_argmax" else (shape[-1],)
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise DataError(f"not a float head for {path.name} ({err})", head_file) from None
    return head


def model_format(path):
    """"keras", "saved_model", "onnx" or "litert" from a path's name (a folder: SavedModel)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise DataError("folder is not a SavedModel (no saved_model.pb in it)", path)
        return "saved_model"
    suffix = path.suffix.lower()
    formats = {".keras": "keras", ".onnx": "onnx", ".tflite": "litert"}
    if suffix not in formats:
        raise DataError("not a model file (.keras, .onnx, .tflite, or a SavedModel folder)", path)
    if not path.is_file():
        raise DataError("model file not found", path)
    return formats[suffix]


def load_inference_model(path, keras_loader=None, threads=None):
    """A runner for `path`: `.keras` (through `keras_loader(path)`, the part's safe-mode
    loader), a SavedModel folder, `.onnx` or `.tflite`.

    Every runner has `predict_on_batch(images) -> {name: float32 array}`, `input_shape`
    (H, W, C), `output_shapes` {name: shape without the batch} and `format`.
    threads: intra-op threads for ONNX Runtime and LiteRT (default: all cores).
    """
    fmt = model_format(path)
    if fmt == "keras":
        if keras_loader is None:
            raise ValueError("a .keras file needs keras_loader. Received: keras_loader=None")
        return KerasRunner(keras_loader(path))
    return {"saved_model": SavedModelRunner, "onnx": OnnxRunner, "litert": LiteRTRunner}[fmt](Path(path), threads)


def is_runner(model):
    return isinstance(model, (KerasRunner, SavedModelRunner, OnnxRunner, LiteRTRunner))


class KerasRunner:
    """A Keras model behind the runner interface: its compiled `predict_on_batch`."""

    format = "keras"

    def __init__(self, model):
        self.model = model
        self.input_shape = tuple(model.input.shape[1:])
        self.output_shapes = {name: tuple(t.shape[1:]) for name, t in model.output.items()}

    def predict_on_batch(self, images):
        return {k: np.asarray(v) for k, v in self.model.predict_on_batch(np.asarray(images)).items()}


class SavedModelRunner:
    """A SavedModel's `serving_default` signature, run by TensorFlow (no Keras)."""

    format = "saved_model"

    def __init__(self, path, threads=None):
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(str(path))
        except (OSError, ValueError) as err:
            raise DataError(f"cannot load the SavedModel ({str(err).splitlines()[0]})", path) from None
        self._keep = loaded  # the signature holds only a weak reference to its variables
        self._fn = loaded.signatures["serving_default"]
        (self._input_name, spec), = self._fn.structured_input_signature[1].items()
        self._dtype = spec.dtype.as_numpy_dtype
        self.input_shape = tuple(spec.shape[1:])
        self.output_shapes = {k: tuple(v.shape[1:]) for k, v in self._fn.structured_outputs.items()}

    def predict_on_batch(self, images):
        out = self._fn(**{self._input_name: np.asarray(images, self._dtype)})
        return {k: v.numpy() for k, v in out.items()}


class OnnxRunner:
    """An ONNX graph run by ONNX Runtime on the CPU."""

    format = "onnx"

    def __init__(self, path, threads=None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Idle threads sleep rather than spin: the threads decoding the next images need the
        # cores between the model's calls (streamed end to end: 0.66-0.70 -> 0.76-0.78 of the
        # slower of decoding and the model, on 2 cores), and the model alone runs as fast.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for a bad file
            raise DataError(f"cannot load the ONNX model ({str(err).splitlines()[0]})", path) from None
        (inp,) = self._session.get_inputs()
        self._input_name = inp.name
        self.input_shape = tuple(inp.shape[1:])
        self._names = [o.name for o in self._session.get_outputs()]
        self.output_shapes = {o.name: tuple(o.shape[1:]) for o in self._session.get_outputs()}
        self.float_head = read_float_head(path, self.output_shapes)  # an INT8 file's

    def predict_on_batch(self, images):
        out = dict(zip(self._names, self._session.run(None, {self._input_name: np.ascontiguousarray(images, np.uint8)})))
        return out if self.float_head is None else apply_float_head(self.float_head, out)


class LiteRTRunner:
    """A `.tflite` file run by the LiteRT interpreter (float32 or INT8 alike: the INT8
    file keeps float inputs and outputs, dequantised inside)."""

    format = "litert"

    def __init__(self, path, threads=None):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
        except ValueError as err:
            raise DataError(f"cannot load the LiteRT model ({str(err).splitlines()[0]})", path) from None
        try:
            self._interpreter.allocate_tensors()  # a file with TensorFlow ("Flex") ops fails here
        except RuntimeError as err:
            if "Flex" not in str(err):
                raise
            raise DataError("the LiteRT file holds TensorFlow (Flex) ops, which the standalone interpreter "
                            "cannot run", path) from None
        signature, = self._interpreter.get_signature_list().values()
        self._input_name, = signature["inputs"]
        # The signature runner resizes its input to each batch's size (the batch dimension is dynamic).
        self._runner = self._interpreter.get_signature_runner()
        details = self._runner.get_input_details()[self._input_name]
        self._dtype = details["dtype"]
        self.input_shape = tuple(int(v) for v in details["shape"][1:])
        self.output_shapes = {k: tuple(int(v) for v in d["shape"][1:])
                              for k, d in self._runner.get_output_details().items()}
        self.float_head = read_float_head(path, self.output_shapes)

    def predict_on_batch(self, images):
        out = self._runner(**{self._input_name: np.ascontiguousarray(images, self._dtype)})
        out = {k: np.array(v) for k, v in out.items()}  # copies: the interpreter reuses its buffers
        return out if self.float_head is None else apply_float_head(self.float_head, out)


# --- the export_*.py scripts ---

def export_main(argv, doc, config_cls, trained, keras_loader, representative_images, extra_files=()):
    """What every export_*.py runs: the model (--model, as its use_* script finds it), its
    run's config, the formats, and the files beside the model that the use_* scripts read
    (config.json, `extra_files`) copied next to the exported ones, so `--model` of a use_*
    script can name an exported file.

    representative_images(cfg, count) -> (N, H, W, C) uint8 from the part's cache.
    """
    import argparse

    from common import cli

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    cli.add_model(parser)
    parser.add_argument("--format", default="all", help=f"{', '.join(FORMATS)} (comma-separated), or all "
                        "(%(default)s)")
    cli.add_output_dir(parser, "folder for the exported files (default: export/ beside --model)")
    parser.add_argument("--cache-dir", help="data.cache_dir (INT8 calibration images)")
    parser.add_argument("--calibration-images", type=int, default=64,
                        help="training-cache images that calibrate INT8 (%(default)s)")
    args = parser.parse_args(argv)
    formats = parse_formats(args.format)
    # --output-dir here is where the files go, not use.output_dir: no shortcut for it.
    cfg, model_path, _ = cli.run_config_from_args(config_cls, args, (("cache_dir", "data.cache_dir"),), trained)
    if model_format(model_path) != "keras":
        raise DataError("export from the trained .keras model", model_path)
    model = keras_loader(model_path)
    images = representative_images(cfg, args.calibration_images) if set(INT8_FORMATS) & set(formats) else None
    output_dir = Path(args.output_dir) if args.output_dir else Path(model_path).parent / "export"
    written = export_model(model, output_dir, formats, images)
    for name in ("config.json",) + tuple(extra_files):
        source = Path(model_path).parent / name
        if source.is_file():
            shutil.copyfile(source, output_dir / name)
    for fmt, path in written.items():
        print(f"{fmt}: {path}")
    return written


def calibration_sample(images, count, seed=0):
    """`count` images spread over a cache's (N, H, W, C) array (a memory map is read only there)."""
    count = min(int(count), len(images))
    if count <= 0:
        raise DataError("no images in the cache to calibrate INT8 with", "data.cache_dir")
    index = np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))
    return np.stack([np.asarray(images[i]) for i in index])
