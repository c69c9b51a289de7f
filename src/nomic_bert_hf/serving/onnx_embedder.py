"""An exported embedder run by onnxruntime inside sentence-transformers: prompts, pooling and normalisation unchanged.

    model = load_onnx_embedder("nomic-embed-text")                                # onnx/model.onnx
    model = load_onnx_embedder("nomic-embed-text", file_name="onnx/model_qint8.onnx")
    model.encode_query(["how do I list files?"])

sentence-transformers' own `backend="onnx"` loads through optimum-onnx, which does not install beside transformers 5
(it requires transformers<4.58). This loader reads the same folder layout (`onnx/*.onnx` beside the embedder's files)
and builds the embedder from its `modules.json`, with the Transformer module's model replaced by an onnxruntime
session. Only the ONNX file and the small files are downloaded for a Hub id, not the safetensors weights.
"""

import json
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download, snapshot_download
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Transformer
from sentence_transformers.util import import_from_string

from nomic_bert_hf.utils.remote_code import allow_remote_code

from .onnx_export import FP32_FILE, ONNX_DIR, OUTPUT_NAME

GROUP_TOKENS = 512  # padded positions per onnxruntime call (fastest of 256-2048 on CPU); a longer sequence runs alone


def length_groups(lengths: list[int], max_tokens: int = GROUP_TOKENS) -> list[list[int]]:
    """Rows in groups of similar length, longest first, each group's rows x longest at most `max_tokens`."""
    groups = []
    for row in sorted(range(len(lengths)), key=lambda row: -lengths[row]):
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= max_tokens:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


class OnnxEncoder:
    """An onnxruntime session over the exported encoder, called as sentence-transformers calls a transformers model.

    The graph computes every position it is given, padding included, so a batch runs as groups of rows of similar
    length cut to their own longest (`length_groups`): the padded work stays close to the real tokens, as in the
    PyTorch model, which never computes on padding. Each row's output is the same in any group."""

    def __init__(self, path: str | Path, config, provider: str | None = None, session_options=None,
                 group_tokens: int = GROUP_TOKENS):
        import onnxruntime

        providers = [provider] if provider else onnxruntime.get_available_providers()[:1]
        self.session = onnxruntime.InferenceSession(str(path), session_options, providers=providers)
        self.input_names = {graph_input.name for graph_input in self.session.get_inputs()}
        self.config = config
        self.group_tokens = group_tokens

    def forward(self, input_ids, attention_mask, token_type_ids=None, return_dict: bool = True):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            inputs["token_type_ids"] = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        inputs = {name: tensor.cpu().long() for name, tensor in inputs.items()}
        mask = inputs["attention_mask"].bool()
        hidden = torch.zeros(*input_ids.shape, self.config.hidden_size)
        for rows in length_groups(mask.sum(1).tolist(), self.group_tokens):
            columns = mask[rows].any(0).nonzero().flatten()  # the group's span: right or left padding
            if len(columns) == 0:
                continue
            span = slice(int(columns[0]), int(columns[-1]) + 1)
            feeds = {name: tensor[rows, span].numpy() for name, tensor in inputs.items()}
            (states,) = self.session.run([OUTPUT_NAME], feeds)
            hidden[rows, span] = torch.from_numpy(states)
        return {OUTPUT_NAME: hidden}

    __call__ = forward


class OnnxTransformer(Transformer):
    """sentence-transformers' Transformer module whose model is an `OnnxEncoder` when loaded with backend "onnx";
    `model_kwargs`: `file_name` (relative to the folder, default `onnx/model.onnx`), `provider`, `session_options`."""

    def _load_model(self, model_name_or_path, transformer_task, config, backend, is_peft_model, **model_kwargs):
        if backend != "onnx":
            return super()._load_model(model_name_or_path, transformer_task, config, backend, is_peft_model,
                                       **model_kwargs)
        file_name = model_kwargs.get("file_name", f"{ONNX_DIR}/{FP32_FILE}")
        path = Path(model_name_or_path) / file_name
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: export the model first (`nomic-bert-export`)")
        return OnnxEncoder(path, config, model_kwargs.get("provider"), model_kwargs.get("session_options"))


def local_files(model_name_or_path: str | Path, file_name: str, revision: str | None) -> Path:
    """A local folder as it is; for a Hub id, everything but the weights and the other ONNX files."""
    if Path(model_name_or_path).is_dir():
        return Path(model_name_or_path)
    folder = snapshot_download(str(model_name_or_path), revision=revision,
                               ignore_patterns=["*.safetensors", "*.bin", f"{ONNX_DIR}/*"])
    hf_hub_download(str(model_name_or_path), file_name, revision=revision)
    return Path(folder)


def load_onnx_embedder(
    model_name_or_path: str | Path,
    file_name: str = f"{ONNX_DIR}/{FP32_FILE}",
    *,
    provider: str | None = None,
    session_options=None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    **kwargs,
) -> SentenceTransformer:
    """The embedder in `model_name_or_path` (folder or Hub id) with its encoder run from the ONNX file `file_name`.
    `provider`: an onnxruntime execution provider (default: the first available); the folder's configuration code
    runs only where it is this package's or with `trust_remote_code`; `kwargs` go to `SentenceTransformer` (e.g.
    `truncate_dim`)."""
    folder = local_files(model_name_or_path, file_name, revision)
    trusted = allow_remote_code(folder, trust_remote_code)
    if not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"{folder} has no modules.json: not a sentence-transformers embedder folder")
    settings_file = folder / "config_sentence_transformers.json"
    settings = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
    model_kwargs = {"file_name": file_name, "provider": provider, "session_options": session_options}
    modules = []
    for entry in json.loads((folder / "modules.json").read_text()):
        module_class = import_from_string(entry["type"])
        if issubclass(module_class, Transformer):
            modules.append(OnnxTransformer.load(str(folder), subfolder=entry["path"], trust_remote_code=trusted,
                                                backend="onnx", model_kwargs=model_kwargs))
        else:
            modules.append(module_class.load(str(folder), subfolder=entry["path"]))
    return SentenceTransformer(
        modules=modules, device="cpu", backend="onnx", prompts=settings.get("prompts"),
        default_prompt_name=settings.get("default_prompt_name"),
        similarity_fn_name=settings.get("similarity_fn_name"), **kwargs,
    )
