"""The sentence-transformers embedder folder: prompts, pooling, Matryoshka truncation, both loading paths."""

import json
import subprocess
import sys

import pytest
import torch
import transformers
from conftest import random_ids
from sentence_transformers import SentenceTransformer

from nomic_bert_hf.model.convert import main as convert
from nomic_bert_hf.model.embedder import PROMPTS, build_embedder, save_embedder

TEXTS = ["What is the capital of France?", "Paris is the capital and largest city of France. " * 5]
LONG_TEXT = "Paris is the capital and largest city of France. " * 300  # ~3000 tokens, past the trained 2048


@pytest.fixture(scope="module")
def embedder_dir(encoder_dir, tmp_path_factory):
    return save_embedder(build_embedder(encoder_dir), tmp_path_factory.mktemp("st") / "nomic-embed-text")


def plain_save(model, folder):
    model.save(str(folder))
    return folder


def plain_save_pretrained(model, folder):
    model.save_pretrained(str(folder))
    return folder


def trainer_checkpoint(model, folder):
    """One training step at learning rate 0 (weights unchanged), checkpointed by sentence-transformers' Trainer."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    args = SentenceTransformerTrainingArguments(
        output_dir=str(folder), max_steps=1, learning_rate=0.0, per_device_train_batch_size=2, save_strategy="steps",
        save_steps=1, report_to=[], use_cpu=True, dataloader_num_workers=0,
    )
    pairs = Dataset.from_dict({"anchor": [TEXTS[0]] * 2, "positive": [TEXTS[1]] * 2})
    loss = MultipleNegativesRankingLoss(model)
    SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs, loss=loss).train()
    return folder / "checkpoint-1"


PLAIN_SAVES = {"save": plain_save, "save_pretrained": plain_save_pretrained, "trainer_checkpoint": trainer_checkpoint}


@pytest.fixture(scope="module", params=list(PLAIN_SAVES))
def plain_dir(request, encoder_dir, tmp_path_factory):
    """An embedder saved by sentence-transformers itself (no `save_embedder`): no max_seq_length in its settings."""
    return PLAIN_SAVES[request.param](build_embedder(encoder_dir), tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def matryoshka_dir(encoder_dir, tmp_path_factory):
    return save_embedder(build_embedder(encoder_dir, matryoshka=True), tmp_path_factory.mktemp("st") / "v15")


def test_folder_holds_everything_a_user_needs(embedder_dir):
    names = {path.name for path in embedder_dir.iterdir()}
    assert {"model.safetensors", "config.json", "modeling_nomic_bert.py", "configuration_nomic_bert.py", "vocab.txt",
            "tokenizer.json", "modules.json", "config_sentence_transformers.json", "1_Pooling"} <= names
    assert json.loads((embedder_dir / "config_sentence_transformers.json").read_text())["prompts"] == PROMPTS
    assert json.loads((embedder_dir / "sentence_bert_config.json").read_text())["max_seq_length"] == 8192
    pooling = json.loads((embedder_dir / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode"] == "mean" and pooling["include_prompt"]


def test_prompts_are_applied_by_encode_query_and_document(embedder_dir):
    model = SentenceTransformer(str(embedder_dir), trust_remote_code=True)
    assert model.max_seq_length == 8192 and model.tokenizer.model_max_length == 8192
    query = model.encode_query(TEXTS[:1], convert_to_tensor=True)
    torch.testing.assert_close(query, model.encode(["search_query: " + TEXTS[0]], convert_to_tensor=True))
    document = model.encode_document(TEXTS[1:], convert_to_tensor=True)
    torch.testing.assert_close(document, model.encode(["search_document: " + TEXTS[1]], convert_to_tensor=True))
    assert (query - model.encode(TEXTS[:1], convert_to_tensor=True)).abs().max() > 1e-4


def test_mean_pooling_then_normalisation(embedder_dir, tokenizer):
    model = SentenceTransformer(str(embedder_dir), trust_remote_code=True)
    encoder = model[0].auto_model
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        tokens = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    expected = torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(model.encode(TEXTS, convert_to_tensor=True), expected, atol=1e-5, rtol=0)


def test_bundled_code_and_native_transformers_give_the_same_embeddings(embedder_dir):
    script = (
        "import sys, json; sys.modules['nomic_bert_hf'] = None\n"
        "from sentence_transformers import SentenceTransformer\n"
        f"texts = {TEXTS!r}\n"
        "trusted = SentenceTransformer(sys.argv[1], trust_remote_code=True)\n"
        "native = SentenceTransformer(sys.argv[1])\n"
        "a, b = trusted.encode_query(texts), native.encode_query(texts)\n"
        "print(json.dumps([type(trusted[0].auto_model).__module__, type(native[0].auto_model).__module__,"
        " float(abs(a - b).max()), trusted.max_seq_length, native.max_seq_length]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(embedder_dir)], capture_output=True, text=True, check=True)
    trusted_module, native_module, difference, *lengths = json.loads(result.stdout.strip().splitlines()[-1])
    assert lengths == [8192, 8192]  # native reads the trained length from config.json: the recorded length lifts it
    assert trusted_module.startswith("transformers_modules.")
    assert native_module == "transformers.models.nomic_bert.modeling_nomic_bert"
    assert difference <= 1e-5


def test_plain_sentence_transformers_saves_reload_like_save_embedder(plain_dir, embedder_dir):
    """sentence-transformers caps the tokenizer at `config.max_position_embeddings` unless the folder records
    max_seq_length; our attribute is n_positions (8192), so folders it writes itself keep the full length."""
    assert "max_seq_length" not in json.loads((plain_dir / "sentence_bert_config.json").read_text())
    reference = SentenceTransformer(str(embedder_dir), trust_remote_code=True)
    model = SentenceTransformer(str(plain_dir), trust_remote_code=True)
    assert model.max_seq_length == 8192 and model.tokenizer.model_max_length == 8192
    assert model.prompts == reference.prompts and PROMPTS.items() <= model.prompts.items()
    texts = [*TEXTS, LONG_TEXT]
    expected = reference.encode_query(texts, convert_to_tensor=True)
    torch.testing.assert_close(model.encode_query(texts, convert_to_tensor=True), expected, atol=1e-5, rtol=0)
    model.max_seq_length = 2048  # what the reload used to give: the long text would have been cut
    assert (model.encode_query([LONG_TEXT], convert_to_tensor=True) - expected[-1:]).abs().max() > 1e-4


def test_native_transformers_reads_plain_saves_as_before(plain_dir):
    native_config = transformers.AutoConfig.from_pretrained(plain_dir)  # no remote code: transformers' own reader
    assert type(native_config) is transformers.NomicBertConfig
    assert native_config.max_position_embeddings == 2048  # the trained length: dynamic NTK starts above it
    assert native_config.rope_parameters == {"rope_type": "dynamic", "rope_theta": 1000.0, "factor": 2.0}
    ours = transformers.AutoModel.from_pretrained(plain_dir, trust_remote_code=True).eval()
    assert ours.config.max_position_embeddings == 8192 and ours.config.max_trained_positions == 2048
    native = transformers.NomicBertModel.from_pretrained(plain_dir).eval()
    ids = random_ids(1, 3000)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).last_hidden_state, native(ids).last_hidden_state, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dim", [16, 8])
def test_matryoshka_truncation_follows_v15(matryoshka_dir, dim):
    model = SentenceTransformer(str(matryoshka_dir), trust_remote_code=True)
    norm = model[2].norm
    assert (norm.weight == 1).all() and (norm.bias == 0).all() and norm.eps == 1e-5
    truncated = model.encode(TEXTS, truncate_dim=dim, normalize_embeddings=True, convert_to_tensor=True)
    full = model.encode(TEXTS, output_value="token_embeddings")
    pooled = torch.stack([tokens.mean(0) for tokens in full])  # mean over every real token
    expected = torch.nn.functional.normalize(torch.nn.functional.layer_norm(pooled, (pooled.shape[-1],))[:, :dim], dim=-1)
    torch.testing.assert_close(truncated, expected, atol=1e-5, rtol=0)


def test_matryoshka_norm_is_frozen(encoder_dir):
    model = build_embedder(encoder_dir, matryoshka=True)
    assert not any(parameter.requires_grad for parameter in model[2].parameters())


def test_nomic_layout_must_be_converted_first(encoder_dir, tmp_path):
    convert([str(encoder_dir), str(tmp_path / "nomic"), "--to", "nomic"])
    with pytest.raises(ValueError, match="nomic-bert-convert"):
        build_embedder(tmp_path / "nomic")
    convert([str(tmp_path / "nomic"), str(tmp_path / "st"), "--sentence_transformers", "--matryoshka"])
    model = SentenceTransformer(str(tmp_path / "st"), trust_remote_code=True)
    assert len(model) == 4 and model.encode(TEXTS).shape == (2, 32)


def test_existing_output_is_never_overwritten_silently(encoder_dir, embedder_dir):
    before = {path.name: path.stat().st_mtime_ns for path in embedder_dir.iterdir()}
    with pytest.raises(FileExistsError):
        save_embedder(build_embedder(encoder_dir), embedder_dir)
    assert {path.name: path.stat().st_mtime_ns for path in embedder_dir.iterdir()} == before


def test_built_embedder_reloads_its_checkpoints_with_its_own_code(encoder_dir):
    """sentence-transformers' Trainer resumes by reloading a checkpoint with the model's trust_remote_code flag;
    without it the native class would load and its weight names would not fit this package's model."""
    assert build_embedder(encoder_dir).trust_remote_code
