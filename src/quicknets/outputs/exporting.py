"""A trained network in a file other tools load: ONNX, TorchScript or safetensors, each checked
against the PyTorch model before it is written, and read back in place of a run.

    from quicknets import export, load_exported
    export(model, "fashion.onnx", images=data.test_images[:1000])   # checked, then written
    export(model, "fashion.safetensors")      # checked on the model's own dataset's test images
    model = load_exported("fashion.onnx")     # an nn.Module with .preprocessing, so predict,
    predict(model, images, names=True)        # classify and evaluate take it as they are

Every format holds the network as it is in PyTorch: input "images", float32 (batch, C, H, W),
already normalised, (pixel / 255 - mean) / std; output "log_probabilities" (batch, classes),
the network's own. The probabilities quicknets reports are softmax(log_probabilities / T), T the
preprocessing's temperature (fitted on the run's validation split; 1.0: none), so an export is
checked, and loaded back, with it. The batch dimension is dynamic. The preprocessing, the
temperature with it, is not in the graph: it travels inside the file as JSON (INFO_KEY), with
the class names, the network's config and the run it came from: ONNX metadata_props,
safetensors' header metadata, and the extra file quicknets.json of a TorchScript archive. So
a program elsewhere reads mean, std, shape, classes and temperature from the file, and nothing
has to be remembered.

A safetensors export also carries the model's familiarity statistics (familiarity.py; what
load_model attaches as `model.familiarity`): their tensors under FAMILIARITY_PREFIX beside the
weights, the method and threshold in the JSON, so load_exported gives them back and classify
and evaluate --ood use them. ONNX and TorchScript exports do not: the scores need the features
at every dense layer's input, which their graphs do not give out; a model loaded from them has
familiarity None (predict(familiarity=True) and evaluate --ood say so).

An export is made in memory, loaded back as a user would load it (onnxruntime; torch.jit.load;
safetensors and the network's builder) and compared with the PyTorch model on test images: the
same top-1 class for every image and every probability within TOLERANCE. Only then is it
written (atomically), so a failed check is an error and leaves no file.
"""

import copy
import importlib
import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from quicknets import __version__
from quicknets.base.errors import QuicknetsError
from quicknets.base.storage import atomic_write_bytes, json_text, output_path
from quicknets.data.preprocessing import Preprocessing
from quicknets.evaluation.classification import predict_proba

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript", "safetensors": ".safetensors"}
ALSO = {"torchscript": (".pt",)}  # torch.jit.save's own examples name the file .pt
NEEDS = {
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
    "torchscript": (),
    "safetensors": ("safetensors",),
}  # to write and check; loading needs the last one
EXTRA = "pip install 'quicknets[export]'"
TOLERANCE = 1e-5  # the most a probability may differ from the PyTorch model's
CHECK_IMAGES = 1000  # test images an export is checked on
INFO_KEY = "quicknets"  # the metadata entry holding the JSON description
INFO_FORMAT = 1
INPUT, OUTPUT = "images", "log_probabilities"
SCRIPT_INFO = "quicknets.json"  # the TorchScript archive's extra file
FAMILIARITY_PREFIX = "familiarity."  # safetensors: the familiarity statistics' tensor names


def format_of(format=None, path=None) -> str:
    """The export format asked for, or the one `path`'s suffix names, else ONNX. An unknown
    format, or a suffix of another format than the one asked for, is an error."""
    by_suffix = next((f for f, s in FORMATS.items() if path and str(path).endswith(s)), None)
    if format is None:
        return by_suffix or "onnx"
    if format not in FORMATS:
        raise QuicknetsError(f"unknown export format {format!r}: choose {', '.join(FORMATS)}")
    if by_suffix and by_suffix != format:
        raise QuicknetsError(f"{path} has the suffix of a {by_suffix} file, not {format}")
    return format


def export_path(path, format: str) -> Path:
    """`path` as a Path, checked before the export is made: it ends in `format`'s suffix
    (FORMATS, or ALSO: TorchScript's .pt when the format is named), so no export is written
    under another kind's name (`--out m.txt`, `m.png`), and its place can take the file
    (storage.output_path). Raises QuicknetsError."""
    suffixes = (FORMATS[format], *ALSO.get(format, ()))
    if not str(path).endswith(suffixes):
        other = [f for f, also in ALSO.items() if f != format and str(path).endswith(also)]
        hint = f" (or name the format: --format {other[0]})" if other else ""
        raise QuicknetsError(
            f"{format} exports are {' or '.join(suffixes)} files: give a name ending in "
            f"{FORMATS[format]}, not {path}{hint}"
        )
    return output_path(path)


def require(format: str, modules=None) -> None:
    """Import what `format` needs, or raise the one line that says how to install it."""
    for module in NEEDS[format] if modules is None else modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise QuicknetsError(
                f"{format} needs the Python package {module}, an optional extra: {EXTRA}"
            ) from None


def describe(model: nn.Module, format: str, run=None) -> dict:
    """The JSON stored with an export: what goes in and out, the preprocessing, the network's
    config, and (given the run record) the run, its data and its test accuracy."""
    pre = model.preprocessing or Preprocessing()
    info = {
        "format": INFO_FORMAT,
        "export": format,
        "input": {
            "name": INPUT,
            "shape": ["batch", *pre.shape],
            "dtype": "float32",
            "values": "(pixel / 255 - mean) / std, per channel",
        },
        "output": {
            "name": OUTPUT,
            "shape": ["batch", len(pre.classes) or None],
            "values": "log-probabilities of the classes, in order; calibrated "
            "probabilities: softmax(log_probabilities / preprocessing.temperature)",
        },
        "preprocessing": pre.to_dict(),
        "network": dict(getattr(model, "config", {})),
        **_familiarity_info(model, format),
        "quicknets": __version__,
        "torch": torch.__version__,
    }
    if run is not None:
        d = run.config.data
        info.update(
            run=run.name,
            test_accuracy=run.results.get("accuracy"),
            data={
                "dataset": d.dataset,
                "data_dir": d.data_dir,
                "val_split": d.val_split,
                "seed": run.config.train.seed,
                "verify": d.verify,
                "val_stratified": bool((run.meta.get("data") or {}).get("val_stratified")),
            },
        )
    return info


def _familiarity_info(model: nn.Module, format: str) -> dict:
    fitted = getattr(model, "familiarity", None)
    return {"familiarity": fitted.describe()} if fitted and format == "safetensors" else {}


def to_bytes(model: nn.Module, format: str, info: dict) -> bytes:
    """The file's bytes: the model (a CPU copy in eval mode) in `format`, with `info`."""
    net = copy.deepcopy(model).cpu().eval()  # the caller's model keeps its device and mode
    text = json_text(info, indent=None)  # strict: a NaN would make the file unreadable
    try:
        with warnings.catch_warnings():  # torch.jit is deprecated (FutureWarning) but loads
            warnings.simplefilter("ignore")  # everywhere; the exporters' notes are not errors
            if format == "onnx":
                # a batch of 2: torch.export would fix a batch of 1 as a constant
                example = torch.zeros(2, *net.preprocessing.shape)
                program = torch.onnx.export(
                    net,
                    (example,),
                    None,
                    dynamo=True,
                    verbose=False,
                    input_names=[INPUT],
                    output_names=[OUTPUT],
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                )
                proto = program.model_proto
                entry = proto.metadata_props.add()
                entry.key, entry.value = INFO_KEY, text
                proto.doc_string = f"quicknets network; metadata_props[{INFO_KEY!r}] is its JSON"
                return proto.SerializeToString()
            if format == "torchscript":
                buffer = io.BytesIO()
                torch.jit.save(torch.jit.script(net), buffer, _extra_files={SCRIPT_INFO: text})
                return buffer.getvalue()
    except Exception as e:  # a network the exporter cannot express
        raise QuicknetsError(f"cannot export the network to {format}: {_first_line(e)}") from None
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    if "familiarity" in info:
        for k, v in model.familiarity.statistics.items():
            tensors[FAMILIARITY_PREFIX + k] = v.detach().cpu().contiguous()
    return save(tensors, metadata={INFO_KEY: text})


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


class OnnxNetwork(nn.Module):
    """An ONNX export run by onnxruntime on the CPU, used like the PyTorch network: (B, C, H, W)
    normalised floats in, log-probabilities (B, classes) out."""

    def __init__(self, session, info: dict):
        super().__init__()
        self.session, self.info, self.config = session, info, info["network"]
        self.preprocessing = Preprocessing.from_dict(info["preprocessing"])
        self.familiarity = None  # not carried (see the module docstring)
        # zero-size: code that asks a network for its device (next(model.parameters())) gets
        # the CPU, where onnxruntime runs
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, x):
        x = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: x})[0])


class ScriptedNetwork(nn.Module):
    """A TorchScript export with its preprocessing, used like the PyTorch network."""

    def __init__(self, scripted, info: dict):
        super().__init__()
        self.net, self.info, self.config = scripted, info, info["network"]
        self.preprocessing = Preprocessing.from_dict(info["preprocessing"])
        self.familiarity = None  # not carried (see the module docstring)

    def forward(self, x):
        return self.net(x)


def from_bytes(data: bytes, format: str, threads=None) -> nn.Module:
    """The export in `data` loaded as a user would load it, as an nn.Module in eval mode with
    `preprocessing` and `info` (the stored JSON). onnxruntime uses `threads` (default: torch's
    thread count, so it shares the cores as the rest of quicknets does)."""
    if format == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        info = session.get_modelmeta().custom_metadata_map.get(INFO_KEY)
        return OnnxNetwork(session, _info(info)).eval()
    if format == "torchscript":
        extra = {SCRIPT_INFO: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; it loads
            scripted = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
        return ScriptedNetwork(scripted, _info(extra[SCRIPT_INFO])).eval()
    from safetensors.torch import load

    from quicknets.networks.models import from_config

    size = int.from_bytes(data[:8], "little")  # the format: header length, JSON header, tensors
    info = _info(json.loads(data[8 : 8 + size]).get("__metadata__", {}).get(INFO_KEY))
    from quicknets.evaluation.familiarity import Familiarity

    model = from_config(info["network"])
    tensors = load(data)
    statistics = {
        k[len(FAMILIARITY_PREFIX) :]: tensors.pop(k)
        for k in list(tensors)
        if k.startswith(FAMILIARITY_PREFIX)
    }
    model.load_state_dict(tensors)
    model.preprocessing, model.info = Preprocessing.from_dict(info["preprocessing"]), info
    model.familiarity = None
    if info.get("familiarity"):
        model.familiarity = Familiarity.from_description(info["familiarity"], statistics)
    return model.eval()


def _info(text) -> dict:
    if not text:
        raise QuicknetsError(
            "it holds no quicknets description (was it written by `quicknets export`?)"
        )
    return json.loads(text)


def check(model: nn.Module, exported: nn.Module, images, format: str) -> dict:
    """Compare an export with the PyTorch model on `images`: top-1 and probabilities. Raises
    QuicknetsError when they differ; returns {images, max_difference}."""
    want = predict_proba(model, images)
    got = predict_proba(exported, images)
    difference = (want - got).abs().max().item()
    # an image whose two likeliest classes are within the tolerance has no meaningful top-1:
    # the export is judged on its probabilities there
    top2 = want.topk(2, dim=1).values
    tied = top2[:, 0] - top2[:, 1] <= TOLERANCE
    differs = int(((want.argmax(1) != got.argmax(1)) & ~tied).sum())
    if differs or not difference <= TOLERANCE:  # `not <=`: NaN fails too
        raise QuicknetsError(
            f"the {format} export does not match the PyTorch model on "
            f"{len(want)} test images (top-1 differs on {differs}, probabilities "
            f"by up to {difference:.1e}, allowed {TOLERANCE:.0e}); nothing was "
            "written"
        )
    return {"images": len(want), "max_difference": difference}


def export(model: nn.Module, path, format=None, images=None, run=None) -> dict:
    """Write `model` to `path` as ONNX, TorchScript or safetensors (`format`, else from the
    suffix) after checking it on `images` (a batch predict accepts; default: the first
    CHECK_IMAGES test images of the model's dataset). `run`, the run record it came from, is
    described in the file too. Returns {path, format, bytes, images, max_difference}."""
    format = format_of(format, path)
    path = export_path(path, format)
    require(format)
    if getattr(model, "preprocessing", None) is None:
        raise QuicknetsError(
            "the network has no preprocessing yet (train it, or load it with "
            "load_model): an export must say what its images need"
        )
    if format == "safetensors" and not getattr(model, "config", None):
        raise QuicknetsError(
            "safetensors holds the weights only: the network must be one "
            "quicknets builds (network(...)), whose config rebuilds it"
        )
    if images is None:
        # your own data ("resize" layout) is named after its file, which may be no built-in
        # name ("pets") or, worse, one ("fashion-mnist_train.csv" gives "fashion-mnist")
        if not model.preprocessing.dataset or model.preprocessing.layout == "resize":
            raise QuicknetsError(
                "give images= to check the export on, such as "
                "data.test_images[:1000]: the model names no built-in "
                "dataset to take them from"
            )
        from quicknets.data.loading import load_dataset

        images = load_dataset(model.preprocessing.dataset).test_images[:CHECK_IMAGES]
    data = to_bytes(model, format, describe(model, format, run))
    result = check(model, from_bytes(data, format), images, format)
    atomic_write_bytes(path, data)
    return {"path": path, "format": format, "bytes": len(data), **result}


def sniff(data: bytes) -> str | None:
    """The format of an export's bytes: a zip is TorchScript; an 8-byte length then a JSON
    header is safetensors; a protobuf starting with field 1 as a varint (0x08: a ModelProto's
    ir_version, which serializers write first) is ONNX; anything else (an image, a report, a
    checkpoint) is None."""
    if data[:4] == b"PK\x03\x04":
        return "torchscript"
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    if data[8:9] == b"{" and 8 + size <= len(data):
        return "safetensors"
    return "onnx" if data[:1] == b"\x08" else None


def load_exported(path, threads=None) -> nn.Module:
    """A file written by `export`, as an nn.Module in eval mode with its `preprocessing` and
    `info` (the stored JSON): ONNX runs in onnxruntime, TorchScript in torch.jit, safetensors
    rebuilds the quicknets network. A file that is not such an export is a QuicknetsError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise QuicknetsError(f"cannot read {path}: {e.strerror}") from None
    format = sniff(data)
    if format is None:  # not "onnx needs onnxruntime" for a PNG given in place of a run
        raise QuicknetsError(
            f"{path} is not a run, nor a file written by `quicknets export` "
            "(ONNX, TorchScript or safetensors)"
        )
    require(format, NEEDS[format][-1:])
    try:
        return from_bytes(data, format, threads)
    except Exception as e:
        raise QuicknetsError(
            f"cannot load {path} as a quicknets export ({format}): {_first_line(e)}"
        ) from None


def is_export(ref) -> bool:
    """Whether a command's RUN argument names an exported file (runs are folders or names)."""
    return Path(ref).is_file()


def export_data(model: nn.Module, data_dir=None):
    """The dataset an exported model was trained on (its recorded split too): from `data_dir`,
    else the recorded folder if it is here, else where quicknets looks for that dataset."""
    from quicknets.data.loading import load_dataset

    d = model.info.get("data") or {}
    folder = data_dir or (
        d.get("data_dir") if d.get("data_dir") and Path(d["data_dir"]).is_dir() else None
    )
    dataset = d.get("dataset") or model.preprocessing.dataset
    if not dataset:
        raise QuicknetsError("the export names no dataset to load")
    return load_dataset(
        dataset,
        folder,
        val_split=d.get("val_split", 0.0),
        seed=d.get("seed", 0),
        verify=d.get("verify", True),
        stratify=bool(d.get("val_stratified")),
    )  # older exports: random
