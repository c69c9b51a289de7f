"""Export a NomicBERT model or embedder to ONNX, in the layout sentence-transformers' ONNX backend reads.

    nomic-bert-export nomic-embed-text                            # writes nomic-embed-text/onnx/model.onnx
    nomic-bert-export nomic-embed-text --quantize int8 --optimize  # and model_qint8.onnx, model_optimized.onnx
    nomic-bert-export nomic-ai/nomic-embed-text-v1.5 --output_dir nomic-embed-text-v1.5-onnx

The graph is the encoder (`input_ids`, `token_type_ids`, `attention_mask` -> `last_hidden_state`) with dynamic batch
and sequence axes: one file serves 1 to `n_positions` (8192) tokens. It is `torch.onnx.export(dynamo=True)` of the
model's padded route, which computes each sequence's dynamic NTK from its own length inside the graph, so an
embedding never depends on its batch-mates. Pooling and normalisation stay in the embedder's sentence-transformers
modules (`nomic_bert_hf.serving.onnx_embedder.load_onnx_embedder` runs them on the graph's output).

Every graph is run by onnxruntime against PyTorch on a probe batch (padding, and a sequence above the trained length)
before `onnx/` is renamed into place: the fp32 and optimised graphs must agree within 1e-4 on normalised embeddings,
int8 must keep a cosine similarity of at least 0.95 (its measured figures are logged). The folder appears complete
or not at all.
"""

import argparse
import importlib.util
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import snapshot_download
from transformers import PretrainedConfig

from nomic_bert_hf.modeling_nomic_bert import NomicBertModel
from nomic_bert_hf.utils.cli import console_command
from nomic_bert_hf.utils.files import atomic_output_dir, load_strict

logger = logging.getLogger(__name__)

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
OPTIMIZED_FILE = "model_optimized.onnx"
QUANTIZED_FILES = {"int8": "model_qint8.onnx"}  # mode -> file; onnxruntime's dynamic quantization
INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
OUTPUT_NAME = "last_hidden_state"
DEFAULT_OPSET = 20  # opsets 23-24 export sdpa as an Attention node onnxruntime 1.32's CPU provider rejects
FP32_TOLERANCE = 1e-4  # max abs difference of normalised embeddings, fp32 and optimised graphs
INT8_MIN_COSINE = 0.95  # below this the quantized graph is refused as broken, not merely approximate


@dataclass(frozen=True)
class GraphCheck:
    """How far a graph's normalised mean-pooled embeddings are from PyTorch's on the probe batch."""

    max_abs_difference: float
    min_cosine: float


def local_folder(model_name_or_path: str | Path, revision: str | None = None) -> Path:
    """A local folder as it is; a Hub id downloaded (without any ONNX files already there)."""
    if Path(model_name_or_path).is_dir():
        return Path(model_name_or_path)
    return Path(snapshot_download(str(model_name_or_path), revision=revision, ignore_patterns=[f"{ONNX_DIR}/*"]))


def load_encoder(folder: Path) -> NomicBertModel:
    """The folder's encoder with this package's class (the graph route it exports), or an error naming the problem."""
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a model or embedder folder")
    model_type = PretrainedConfig.get_config_dict(str(folder))[0].get("model_type")
    if model_type != "nomic_bert":
        raise ValueError(f"{folder} is not a NomicBERT model (its model_type is {model_type!r}, not 'nomic_bert')")
    try:
        model = load_strict(NomicBertModel, folder)
    except ValueError as error:
        raise ValueError(f"{error}. Checkpoints in Nomic's format are converted with `nomic-bert-convert` first") from error
    return model.float().eval()


def probe_batch(config) -> dict[str, torch.Tensor]:
    """Two rows: one above the trained length (dynamic NTK) where the model allows it, one short and padded."""
    long = min(config.n_positions, config.max_trained_positions + 8)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, config.vocab_size, (2, long), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    return {"input_ids": input_ids, "token_type_ids": torch.zeros_like(input_ids), "attention_mask": attention_mask}


def sentence_embeddings(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean pooling over the real tokens, L2-normalised (the embedder's modules, as the checks compare them)."""
    mask = attention_mask[..., None].to(hidden.dtype)
    return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)


def export_graph(model: NomicBertModel, path: Path, opset: int) -> None:
    example = probe_batch(model.config)
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence", max=model.config.n_positions)}
    try:
        torch.onnx.export(
            model, (), str(path), kwargs=example, dynamic_shapes={name: dims for name in INPUT_NAMES},
            input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME], opset_version=opset, dynamo=True,
            external_data=False, verbose=False,
        )
    except Exception as error:
        raise RuntimeError(f"torch.onnx could not export the model at opset {opset}: {error}") from error


def check_graph(path: Path, model: NomicBertModel, opset: int) -> GraphCheck:
    """Run the graph in onnxruntime on the probe batch and compare with PyTorch."""
    import onnxruntime

    inputs = probe_batch(model.config)
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (hidden,) = session.run([OUTPUT_NAME], {name: tensor.numpy() for name, tensor in inputs.items()})
    except Exception as error:
        raise RuntimeError(
            f"onnxruntime {onnxruntime.__version__} cannot run {path.name} (opset {opset}): {error}. "
            f"The default opset {DEFAULT_OPSET} runs"
        ) from error
    with torch.no_grad():
        expected = sentence_embeddings(model(**inputs).last_hidden_state, inputs["attention_mask"])
    got = sentence_embeddings(torch.from_numpy(hidden), inputs["attention_mask"])
    return GraphCheck(float((got - expected).abs().max()), float((got * expected).sum(-1).min()))


def optimize_graph(source: Path, target: Path, config) -> None:
    """onnxruntime's transformer optimizer (graph fusions for its CPU provider), saved as a file."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(source), model_type="bert", num_heads=config.n_head, hidden_size=config.n_embd)
    optimized.save_model_to_file(str(target))


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic quantization (weights int8 ahead of time, activations per call) of every MatMul."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])


def require_onnx_packages() -> None:
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"exporting to ONNX needs {', '.join(missing)}: pip install 'nomic-bert-hf[onnx]'")


def write_graphs(model: NomicBertModel, folder: Path, *, quantize: Sequence[str], optimize: bool, opset: int) -> None:
    """Write and check every requested graph into `folder`."""
    require_onnx_packages()
    fp32 = folder / FP32_FILE
    export_graph(model, fp32, opset)
    outputs = [(fp32, FP32_TOLERANCE)]
    if optimize:
        optimize_graph(fp32, folder / OPTIMIZED_FILE, model.config)
        outputs.append((folder / OPTIMIZED_FILE, FP32_TOLERANCE))
    for mode in quantize:
        quantize_int8(fp32, folder / QUANTIZED_FILES[mode])
        outputs.append((folder / QUANTIZED_FILES[mode], None))
    for path, tolerance in outputs:
        check = check_graph(path, model, opset)
        logger.info("%s against PyTorch fp32: max abs difference %.2e, min cosine %.6f",
                    path.name, check.max_abs_difference, check.min_cosine)
        if tolerance is not None and check.max_abs_difference > tolerance:
            raise RuntimeError(f"{path.name} differs from PyTorch by {check.max_abs_difference:.2e} (> {tolerance})")
        if tolerance is None and check.min_cosine < INT8_MIN_COSINE:
            raise RuntimeError(f"{path.name} keeps a cosine similarity of only {check.min_cosine:.4f} to PyTorch")


def export_onnx(
    model_name_or_path: str | Path,
    output_dir: str | Path | None = None,
    *,
    quantize: Sequence[str] = (),
    optimize: bool = False,
    opset: int = DEFAULT_OPSET,
    revision: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `onnx/` (fp32, and the requested variants) into a model folder, or into a copy of it at `output_dir`
    (required for a Hub id); returns the `onnx/` folder. An existing `onnx/` or `output_dir` is replaced only with
    `overwrite`, and only once the new one is complete."""
    unknown = sorted(set(quantize) - set(QUANTIZED_FILES))
    if unknown:
        raise ValueError(f"quantization mode {', '.join(unknown)} is not offered; choose from {', '.join(QUANTIZED_FILES)}")
    if output_dir is None and not Path(model_name_or_path).is_dir():
        raise ValueError(f"{model_name_or_path} is not a local folder: give an output folder for the exported copy")
    source = local_folder(model_name_or_path, revision)
    model = load_encoder(source)
    if output_dir is None:
        with atomic_output_dir(source / ONNX_DIR, overwrite=overwrite) as staging:
            write_graphs(model, staging, quantize=quantize, optimize=optimize, opset=opset)
        return source / ONNX_DIR
    with atomic_output_dir(output_dir, overwrite=overwrite) as staging:
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns(ONNX_DIR, ".*"), dirs_exist_ok=True)
        (staging / ONNX_DIR).mkdir()
        write_graphs(model, staging / ONNX_DIR, quantize=quantize, optimize=optimize, opset=opset)
    return Path(output_dir) / ONNX_DIR


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="nomic-bert-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model or embedder folder, or Hub id")
    parser.add_argument("--output_dir", "--output-dir",
                        help="write a copy of the model with onnx/ here (default: into the folder)")
    parser.add_argument("--quantize", nargs="*", default=[], metavar="MODE",
                        help=f"also write quantized graphs: {', '.join(QUANTIZED_FILES)}")
    parser.add_argument("--optimize", action="store_true", help="also write onnxruntime's optimised graph")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--revision", help="Hub revision")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing onnx/ (or output folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)  # the checks' figures, without onnxruntime's per-tensor quantization notes
    folder = export_onnx(args.model, args.output_dir, quantize=args.quantize, optimize=args.optimize, opset=args.opset,
                         revision=args.revision, overwrite=args.overwrite)
    logger.info("wrote %s", ", ".join(str(path) for path in sorted(folder.iterdir())))
    return folder


command = console_command(main, "nomic-bert-export")  # the console script (pyproject.toml)


if __name__ == "__main__":
    command()
