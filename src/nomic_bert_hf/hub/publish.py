"""Build the Hugging Face Hub repository folder of a trained embedder, with its model card, and push it.

    nomic-bert-publish runs/nomic-embed-text/final --repo_id myorg/nomic-embed-text --results results/mteb --dry_run
    nomic-bert-publish runs/nomic-embed-text/final --repo_id myorg/nomic-embed-text --results results/mteb

The folder (default `./<repo name>`) holds the safetensors weights, the model's own code (no other repository is
referenced), the tokenizer with `vocab.txt`, the sentence-transformers files with the prompts (also under mteb's
task-type keys), the training configs and data manifest it was saved with, the mteb result files of these weights,
and README.md rendered from `model_card.md`: usage, training recipe and data, evaluation tables and `model-index`.
Only results whose revision is the digest of these weights are used; results of other models or revisions in the
same result folders are left out (and logged).

The folder is built beside its destination, checked in a fresh offline process (sentence-transformers with and
without `trust_remote_code`, and `AutoModel`) and only then renamed into place. Without `--dry_run` it is then
uploaded with `HfApi`: the token and the Hub are checked (by creating the repository) before anything is written, so
a missing token or network leaves nothing behind.
"""

import argparse
import datetime
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, get_token

from nomic_bert_hf.evaluation.model_meta import NOMIC_CITATION, matryoshka_dims
from nomic_bert_hf.evaluation.protocol import PROTOCOL_PROMPTS
from nomic_bert_hf.evaluation.results import (
    EvaluationRun,
    category_rows,
    find_runs,
    length_scores,
    markdown_category_table,
    markdown_length_table,
    markdown_precision_table,
    markdown_table,
    markdown_task_table,
    precision_scores,
    task_rows,
)
from nomic_bert_hf.model.embedder_folder import (
    EmbedderInfo,
    embedder_info,
    require_embedder_folder,
)
from nomic_bert_hf.serving.onnx_export import (
    DEFAULT_OPSET,
    FP32_FILE,
    FP32_TOLERANCE,
    INT8_MIN_COSINE,
    ONNX_DIR,
    QUANTIZED_FILES,
    load_encoder,
    write_graphs,
)
from nomic_bert_hf.utils.cli import console_command
from nomic_bert_hf.utils.configs import CONFIG_FILE
from nomic_bert_hf.utils.files import atomic_output_dir
from nomic_bert_hf.utils.provenance import PROVENANCE_FILE, write_json
from nomic_bert_hf.utils.remote_code import allow_remote_code

logger = logging.getLogger(__name__)

TEMPLATE = Path(__file__).parents[1] / "resources" / "model_card.md"
MANIFEST_NAMES = ("data_manifest.json", "data_manifest.yaml", "manifest.json")
INIT_KEYS = ("model_name_or_path", "init_model", "base_model", "model")  # config keys naming a stage's starting model
MTEB_SOURCE = {"source_name": "MTEB", "source_url": "https://github.com/embeddings-benchmark/mteb"}
PROMPT_USES = {
    "query": ("Search queries", "`encode_query(texts)`"),
    "document": ("Documents to search (and both sides of symmetric search)", "`encode_document(texts)`"),
    "classification": ("Features for classifiers, semantic similarity", '`encode(texts, prompt_name="classification")`'),
    "clustering": ("Grouping texts, topic discovery", '`encode(texts, prompt_name="clustering")`'),
}
VALIDATION_SCRIPT = """
import json, os, sys
sys.modules["nomic_bert_hf"] = None  # the folder must work without the package that built it
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer
name, texts = sys.argv[1], json.loads(sys.argv[2])
trusted = SentenceTransformer(name, trust_remote_code=True)
native = SentenceTransformer(name)
queries, documents = trusted.encode_query(texts), trusted.encode_document(texts)
encoder = AutoModel.from_pretrained(name, trust_remote_code=True).eval()
batch = AutoTokenizer.from_pretrained(name)(texts, padding=True, return_tensors="pt")
with torch.no_grad():
    hidden = encoder(**batch).last_hidden_state
onnx_checks = {}  # every graph in onnx/: max abs difference and min cosine of its mean-pooled embeddings
if os.path.isdir(os.path.join(name, "onnx")):
    import onnxruntime
    mask = batch["attention_mask"][..., None].float()
    pool = lambda states: torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
    for file in sorted(os.listdir(os.path.join(name, "onnx"))):
        session = onnxruntime.InferenceSession(os.path.join(name, "onnx", file), providers=["CPUExecutionProvider"])
        feeds = {graph_input.name: batch[graph_input.name].numpy() for graph_input in session.get_inputs()}
        got, expected = pool(torch.from_numpy(session.run(["last_hidden_state"], feeds)[0])), pool(hidden)
        onnx_checks[file] = [float((got - expected).abs().max()), float((got * expected).sum(-1).min())]
print(json.dumps({
    "onnx": onnx_checks,
    "dimension": int(queries.shape[1]),
    "max_seq_length": trusted.max_seq_length,
    "prompts": trusted.prompts,
    "trusted_class": type(trusted[0].auto_model).__module__,
    "native_class": type(native[0].auto_model).__module__,
    "automodel_class": type(encoder).__module__,
    "native_difference": float(abs(native.encode_query(texts) - queries).max()),
    "query_document_difference": float(abs(queries - documents).max()),
    "automodel_finite": bool(torch.isfinite(hidden).all()),
}))
"""
VALIDATION_TEXTS = ["What is the capital of France?", "Paris is the capital and largest city of France."]


def check_self_contained(folder: Path, trust_remote_code: bool = False) -> None:
    """The folder's config must load only code stored in the folder itself (no `other/repo--module.Class`), and that
    code must be this package's unless `trust_remote_code`: the validation runs it."""
    auto_map = json.loads((folder / "config.json").read_text()).get("auto_map") or {}
    if not auto_map:
        raise ValueError(f"{folder}/config.json has no auto_map: the model's code would not travel with it")
    for auto_class, reference in auto_map.items():
        module = reference.rsplit(".", 1)[0]
        if "--" in reference or not (folder / f"{module}.py").is_file():
            raise ValueError(
                f"{folder}/config.json maps {auto_class} to {reference!r}, which is not a file in the folder; "
                "convert the checkpoint with `nomic-bert-convert` so that it carries its own code"
            )
    for source in folder.glob("*.py"):
        for module in re.findall(r"^from \.(\w+) import", source.read_text(), flags=re.MULTILINE):
            if not (folder / f"{module}.py").is_file():
                raise ValueError(f"{source} imports .{module}, which is not in the folder")
    allow_remote_code(folder, trust_remote_code, required=True)


def stage_label(folder: Path) -> str:
    """A stage's name: its run folder's name for a script's `<run>/final` output."""
    folder = folder.resolve()
    return folder.parent.name if folder.name == "final" else folder.name


def training_stages(model_dir: Path, extra_configs: list[Path]) -> list[dict]:
    """The resolved configs saved with the model, followed back through the local folders each stage started
    from (`model_name_or_path` and similar keys), then any configs given explicitly."""
    stages, seen, folder = [], set(), model_dir
    while folder is not None and (folder / CONFIG_FILE).is_file() and folder.resolve() not in seen:
        seen.add(folder.resolve())
        config = yaml.safe_load((folder / CONFIG_FILE).read_text()) or {}
        stages.append({"name": stage_label(folder), "path": folder / CONFIG_FILE, "config": config})
        starts = [Path(str(config[key])) for key in INIT_KEYS if isinstance(config.get(key), str)]
        folder = next((start for start in starts if start.is_dir()), None)
    for path in extra_configs:
        stages.append({"name": path.stem, "path": path, "config": yaml.safe_load(path.read_text()) or {}})
    for stage in stages:
        stage["text"] = yaml.safe_dump(stage["config"], sort_keys=True).strip()
    return stages


def base_model(stages: list[dict]) -> str | None:
    """The Hub model the first stage started from, if it started from one."""
    for stage in reversed(stages):
        for key in INIT_KEYS:
            value = stage["config"].get(key)
            if isinstance(value, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", value) and not Path(value).exists():
                return value
    return None


def read_structured(path: Path):
    return json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())


def render_manifest(manifest) -> str:
    """A data manifest as markdown: scalars as a list, lists of records as tables, anything else as YAML."""
    if not isinstance(manifest, dict):
        return f"```yaml\n{yaml.safe_dump(manifest, sort_keys=False).strip()}\n```"
    parts, scalars = [], []
    for key, value in manifest.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            scalars.append(f"- **{key}**: {value}")
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            columns = [column for column in dict.fromkeys(k for item in value for k in item)
                       if all(not isinstance(item.get(column), (dict, list)) for item in value)][:8]
            rows = [[str(item.get(column, "")) for column in columns] for item in value]
            parts.append(f"**{key}**\n\n{markdown_table(columns, rows)}")
        else:
            parts.append(f"**{key}**\n\n```yaml\n{yaml.safe_dump(value, sort_keys=False).strip()}\n```")
    return "\n\n".join(["\n".join(scalars)] * bool(scalars) + parts)


def render_glue(results) -> str:
    """GLUE results ({task: score} or {task: {metric: score}}) as a markdown table."""
    rows = []
    for task, value in (results.get("results", results) if isinstance(results, dict) else {}).items():
        metrics = value if isinstance(value, dict) else {"score": value}
        rows += [[task, metric, f"{score:.3f}"] for metric, score in metrics.items() if isinstance(score, (int, float))]
    if not rows:
        raise ValueError("the GLUE results hold no scores ({task: score} or {task: {metric: score}} expected)")
    return markdown_table(["Task", "Metric", "Score"], rows)


def matching_runs(results_dirs: list[Path], revision: str) -> list[tuple[Path, EvaluationRun]]:
    """The runs of exactly these weights; runs of other revisions are logged and left out."""
    runs = []
    for results_dir in results_dirs:
        for run in find_runs(results_dir):
            if run.revision == revision:
                runs.append((results_dir, run))
            else:
                logger.info("leaving out %s: results of %s at revision %s, not of these weights (%s)",
                            run.folder, run.model_name, run.revision, revision)
    if results_dirs and not runs:
        logger.warning("no results in %s are for these weights (revision %s)",
                       ", ".join(map(str, results_dirs)), revision)
    return runs


def dataset_id(row: dict) -> str:
    """The Hub dataset a task's data came from, or `local/<task>` for local files (no local paths in the card)."""
    path = str(row["dataset"].get("path", ""))
    is_hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", path) and not Path(path).exists()
    return path if is_hub_id else f"local/{row['task']}"


def eval_results(rows: list[dict], split_of: dict[str, str], config: str | None = None) -> list[EvalResult]:
    return [
        EvalResult(task_type=row["type"], task_name=row["type"], dataset_type=dataset_id(row),
                   dataset_name=row["task"], dataset_split=split_of.get(row["task"]),
                   dataset_revision=row["dataset"].get("revision"), dataset_config=config,
                   metric_type=row["metric"], metric_value=row["score"], **MTEB_SOURCE)
        for row in rows if row["score"] is not None
    ]


def evaluation_section(runs: list[tuple[Path, EvaluationRun]]) -> tuple[dict, list[EvalResult]]:
    """Card variables, and `model-index` entries for the standard run and the sequence-length runs (the quantized
    runs only get their table: `model-index` holds the float32 scores)."""
    standard_rows, results, versions, splits = {}, [], set(), {}
    for results_dir, run in runs:
        for result in run.results.values():
            versions.add(result.mteb_version)
            splits[result.task_name] = ",".join(result.scores)
        if not run.experiment:
            standard_rows.update({row["task"]: row for row in task_rows(run, results_dir)})
    rows = sorted(standard_rows.values(), key=lambda row: (row["type"], row["task"]))
    results += eval_results(rows, splits)
    lengths = length_scores([run for _, run in runs])
    factors = sorted({run.experiment["rotary_scaling_factor"] for _, run in runs
                      if "rotary_scaling_factor" in run.experiment})
    info_by_task = {row["task"]: row for results_dir, run in runs for row in task_rows(run, results_dir)}
    for task, by_length in lengths.items():
        for length, score in by_length.items():
            row = {**info_by_task[task], "score": score}
            results += eval_results([row], splits, config=f"max_seq_length={length}")
    precisions = precision_scores([run for _, run in runs])
    variables = {
        "mteb_version": ", ".join(sorted(v for v in versions if v)) or "unknown",
        "quantized_table": markdown_precision_table(precisions) if precisions else "",
        "mteb_task_table": markdown_task_table(rows) if rows else "",
        "mteb_category_table": markdown_category_table(category_rows(rows)) if rows else "",
        "long_context_table": markdown_length_table(lengths) if lengths else "",
        "long_context_factor": ", ".join(map(str, factors)) or "none",
    }
    return variables, results


def model_citation(repo_id: str) -> str:
    key = re.sub(r"\W+", "_", repo_id).strip("_").lower()
    return (f"@misc{{{key},\n  title = {{{repo_id}}},\n  howpublished = {{\\url{{https://huggingface.co/{repo_id}}}}},\n"
            f"  note = {{A Nomic Embed reproduction trained with nomic-bert-hf}},\n"
            f"  year = {{{datetime.date.today().year}}}\n}}")


def render_card(model_dir: Path, info: EmbedderInfo, *, repo_id: str, license: str, stages: list[dict],
                runs: list[tuple[Path, EvaluationRun]], manifest_path: Path | None, glue_path: Path | None,
                folder_name: str, onnx_files: list[str] = ()) -> ModelCard:
    config = json.loads((model_dir / "config.json").read_text())
    settings = json.loads((model_dir / "sentence_bert_config.json").read_text())
    variables, results = evaluation_section(runs)
    card_data = ModelCardData(
        model_name=repo_id,
        language="en",
        license=license,
        library_name="sentence-transformers",
        pipeline_tag="sentence-similarity",
        tags=["sentence-transformers", "feature-extraction", "sentence-similarity", "mteb", "nomic-bert",
              "custom_code", "transformers"],
        base_model=base_model(stages),
        eval_results=results or None,
    )
    prompt_rows = [{"use": PROMPT_USES[name][0], "prefix": info.prompts[name], "call": PROMPT_USES[name][1]}
                   for name in PROMPT_USES if name in info.prompts]
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        title=repo_id.split("/")[-1],
        repo_id=repo_id,
        folder_name=folder_name,
        dimension=info.dimension,
        max_tokens=info.max_tokens,
        max_seq_length=settings.get("max_seq_length", info.max_tokens),
        trained_length=config.get("max_trained_positions") or config.get("max_position_embeddings"),
        rotary_scaling_factor=config.get("rotary_scaling_factor"),
        n_parameters_m=round(info.n_parameters / 1e6, 1),
        matryoshka=info.matryoshka,
        matryoshka_dims=matryoshka_dims(model_dir, info.dimension, info.matryoshka),
        prompt_rows=prompt_rows,
        onnx_files=list(onnx_files),
        quantized_file=QUANTIZED_FILES["int8"],
        stages=stages,
        data_section=render_manifest(read_structured(manifest_path)) if manifest_path else
        "No data manifest was saved with this model; the training configs above name the data.",
        weights_revision=info.weights_digest,
        glue_table=render_glue(read_structured(glue_path)) if glue_path else "",
        license=f"`{license}`",
        model_citation=model_citation(repo_id),
        nomic_citation=NOMIC_CITATION,
        **variables,
    )


def copy_model_files(model_dir: Path, target: Path) -> None:
    """Weights, code, configs, tokenizer and the sentence-transformers module folders (not the old README)."""
    modules = json.loads((model_dir / "modules.json").read_text())
    # README.md, the card sentence-transformers generated at the final save, stays behind: it describes the last
    # stage only (or, saved untrained, repeats a loaded model's card) and holds no mteb results, so the template is
    # the card, with every stage's config and the data manifest. Not carried over: that stage's loss log, dataset
    # column statistics, framework versions, codecarbon emissions and loss citations (to keep them, persist
    # `model.model_card_data` per stage when it is saved; the folder keeps only its rendered text).
    for path in model_dir.iterdir():
        if path.is_file() and (path.suffix in {".json", ".safetensors", ".py"} or path.name in {"vocab.txt", CONFIG_FILE}):
            shutil.copy2(path, target / path.name)
    for module in modules:
        if module["path"]:
            shutil.copytree(model_dir / module["path"], target / module["path"])
    settings_file = target / "config_sentence_transformers.json"
    settings = json.loads(settings_file.read_text())
    settings["prompts"] = {**PROTOCOL_PROMPTS, **settings.get("prompts", {})}  # mteb's keys beside the model's own
    settings_file.write_text(json.dumps(settings, indent=2) + "\n")


def find_manifest(model_dir: Path, manifest: Path | None) -> Path | None:
    if manifest is not None:
        if not manifest.is_file():
            raise FileNotFoundError(f"data manifest {manifest} does not exist")
        return manifest
    return next((model_dir / name for name in MANIFEST_NAMES if (model_dir / name).is_file()), None)


def build_repo_folder(
    model_dir: str | Path,
    output_dir: str | Path,
    *,
    repo_id: str,
    results_dirs: list[str | Path] = (),
    glue_results: str | Path | None = None,
    data_manifest: str | Path | None = None,
    training_configs: list[str | Path] = (),
    license: str = "apache-2.0",
    onnx: bool = False,
    onnx_int8: bool = False,
    overwrite: bool = False,
    provenance: dict | None = None,
    trust_remote_code: bool = False,
) -> Path:
    """Write the complete Hub repository folder for the embedder in `model_dir` to `output_dir`; with `onnx` /
    `onnx_int8` also `onnx/model.onnx` / and `onnx/model_qint8.onnx` (`nomic_bert_hf.serving.onnx_export`).

    The folder is built beside `output_dir`, loaded in a fresh process (`validate_repo_folder`), given `provenance`
    (a record of how the weights were made, written as `provenance.json` with their digest) and only then renamed
    into place: `output_dir` is a validated folder or absent, never half-written or unchecked. A folder whose code
    is not this package's is refused unless `trust_remote_code`."""
    model_dir = require_embedder_folder(model_dir)
    check_self_contained(model_dir, trust_remote_code)
    info = embedder_info(model_dir)
    manifest = find_manifest(model_dir, Path(data_manifest) if data_manifest else None)
    stages = training_stages(model_dir, [Path(path) for path in training_configs])
    runs = matching_runs([Path(path) for path in results_dirs], info.weights_digest)
    glue_path = Path(glue_results) if glue_results else None
    quantize = ["int8"] if onnx_int8 else []
    onnx_files = [FP32_FILE, *(QUANTIZED_FILES[mode] for mode in quantize)] if onnx or onnx_int8 else []
    card = render_card(model_dir, info, repo_id=repo_id, license=license, stages=stages, runs=runs,
                       manifest_path=manifest, glue_path=glue_path, folder_name=Path(output_dir).name,
                       onnx_files=onnx_files)
    with atomic_output_dir(output_dir, overwrite=overwrite) as staging:
        copy_model_files(model_dir, staging)
        if onnx_files:
            (staging / ONNX_DIR).mkdir()
            write_graphs(load_encoder(model_dir), staging / ONNX_DIR, quantize=quantize, optimize=False,
                         opset=DEFAULT_OPSET)
        card.save(staging / "README.md")
        if manifest is not None:
            shutil.copy2(manifest, staging / f"data_manifest{manifest.suffix}")
        for number, stage in enumerate(stages[1:], 1):  # the model's own config.yaml is already in the folder
            (staging / "training_configs").mkdir(exist_ok=True)
            (staging / "training_configs" / f"{number}_{stage['name']}.yaml").write_text(stage["text"] + "\n")
        for results_dir, run in runs:
            shutil.copytree(run.folder, staging / "mteb_results" / run.folder.relative_to(results_dir / "results"),
                            ignore=shutil.ignore_patterns("*.md", "*.yaml"), dirs_exist_ok=True)
        report = validate_repo_folder(staging)
        logger.info("%s loads in a fresh offline process: %s", output_dir, report)
        if provenance is not None:
            write_json(staging / PROVENANCE_FILE, {**provenance, "weights": info.weights_digest})
    return Path(output_dir)


def validate_repo_folder(folder: str | Path) -> dict:
    """Load the folder in a fresh offline process the way users will (by its name, from the folder above it), with
    sentence-transformers (bundled code and transformers' native class) and `AutoModel`; return what it saw."""
    folder = Path(folder).resolve()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.run(
        [sys.executable, "-c", VALIDATION_SCRIPT, folder.name, json.dumps(VALIDATION_TEXTS)],
        cwd=folder.parent, env=env, capture_output=True, text=True,
    )
    if process.returncode != 0:
        last_line = (process.stderr.strip().splitlines() or ["no error output"])[-1]
        raise RuntimeError(f"{folder} does not load in a fresh process: {last_line}\n{process.stderr[-4000:]}")
    report = json.loads(process.stdout.strip().splitlines()[-1])
    graphs_wrong = any(
        (file == FP32_FILE and difference > FP32_TOLERANCE) or cosine < INT8_MIN_COSINE
        for file, (difference, cosine) in report["onnx"].items()
    )
    if (report["native_difference"] > 1e-4 or not report["automodel_finite"] or report["query_document_difference"] == 0
            or graphs_wrong):
        raise RuntimeError(f"{folder} loads but behaves wrongly: {report}")
    return report


def push_repo_folder(api: HfApi, folder: Path, repo_id: str, commit_message: str) -> str:
    """Upload the folder; on failure say where the complete folder is and how to upload it by hand."""
    try:
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                 commit_message=commit_message)
    except Exception as error:
        raise RuntimeError(f"upload to {repo_id} failed ({error}); the complete folder is {folder}: "
                           f"upload it later with `hf upload {repo_id} {folder}`") from error


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="nomic-bert-publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="the trained embedder folder (e.g. <run>/final)")
    parser.add_argument("--repo_id", "--repo-id", required=True, help="Hub repository, org/name")
    parser.add_argument("--output_dir", "--output-dir", help="the repository folder to write (default: ./<repo name>)")
    parser.add_argument("--results", nargs="*", default=[], help="mteb result folders (evaluation output_dir)")
    parser.add_argument("--glue_results", "--glue-results",
                        help="GLUE results JSON/YAML ({task: score} or {task: {metric: score}})")
    parser.add_argument("--data_manifest", "--data-manifest",
                        help=f"data manifest (default: {' or '.join(MANIFEST_NAMES)} in model_dir)")
    parser.add_argument("--training_config", "--training-config", nargs="*", default=[],
                        help="further stage configs to show in the card")
    parser.add_argument("--license", default="apache-2.0")
    parser.add_argument("--onnx", action="store_true", help="include onnx/model.onnx (nomic-bert-export's graph)")
    parser.add_argument("--onnx_int8", "--onnx-int8", action="store_true",
                        help="include onnx/model.onnx and its int8 quantization")
    parser.add_argument("--dry_run", "--dry-run", action="store_true",
                        help="write and validate the folder, upload nothing")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the one saved by `hf auth login`)")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--commit_message", "--commit-message", default="Upload nomic-bert-hf embedder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--trust_remote_code", "--trust-remote-code", action="store_true",
                        help="publish (and so run, to validate) code that is not this package's")
    parser.add_argument("--provenance", help=f"JSON record of how the model was made, written as {PROVENANCE_FILE} "
                                             "(with the weights' digest) once the folder is validated")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    output_dir = Path(args.output_dir or args.repo_id.split("/")[-1])
    model_dir = require_embedder_folder(args.model_dir)
    check_self_contained(model_dir, args.trust_remote_code)
    if output_dir.exists() and any(output_dir.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{output_dir} already exists; choose another --output_dir or pass --overwrite")

    api = None
    if not args.dry_run:
        token = args.token or get_token()
        if not token:
            raise PermissionError("no Hugging Face token: run `hf auth login`, set HF_TOKEN or pass --token "
                                  "(nothing was written; --dry_run builds the folder without uploading)")
        api = HfApi(token=token)
        try:
            api.create_repo(args.repo_id, repo_type="model", private=args.private, exist_ok=True)
        except Exception as error:
            raise ConnectionError(f"could not create {args.repo_id} on the Hub ({error}); check the network and the "
                                  "token. Nothing was written; --dry_run builds the folder without uploading") from error

    folder = build_repo_folder(model_dir, output_dir, repo_id=args.repo_id, results_dirs=args.results,
                               glue_results=args.glue_results, data_manifest=args.data_manifest,
                               training_configs=args.training_config, license=args.license, onnx=args.onnx,
                               onnx_int8=args.onnx_int8, overwrite=args.overwrite,
                               trust_remote_code=args.trust_remote_code,
                               provenance=json.loads(Path(args.provenance).read_text()) if args.provenance else None)
    if api is not None:
        url = push_repo_folder(api, folder, args.repo_id, args.commit_message)
        logger.info("uploaded %s to %s", folder, url)
    return folder


command = console_command(main, "nomic-bert-publish")  # the console script (pyproject.toml)


if __name__ == "__main__":
    command()
