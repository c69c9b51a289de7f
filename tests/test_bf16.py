"""bf16 on CPU: the dtype policy, and bf16 embeddings against fp32 through the real loading paths. bf16 CPU kernels
run on every x86 CPU (only the speed depends on AMX / AVX-512 BF16), so the numbers are checked everywhere."""

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import random_ids, sharpen, tiny_config
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer

from nomic_bert_hf import NomicBertModel
from nomic_bert_hf.evaluation import embedder_model_meta
from nomic_bert_hf.model.embedder import build_embedder, save_embedder
from nomic_bert_hf.training.runs import RunTrainingArguments
from nomic_bert_hf.utils.compute import bf16_matrix_units, choose_dtype, compute_record

LENGTHS = (8, 100, 512, 2048, 8192)


@pytest.fixture(scope="module")
def embedder_dir(encoder_dir, tmp_path_factory):
    return save_embedder(build_embedder(encoder_dir), tmp_path_factory.mktemp("bf16") / "nomic-embed-text")


def test_auto_is_bf16_exactly_where_the_cpu_has_bf16_matrix_units(caplog):
    has_units = torch.cpu.get_capabilities().get("amx_bf16") or torch.cpu.get_capabilities().get("avx512_bf16")
    with caplog.at_level(logging.INFO, logger="nomic_bert_hf.utils.compute"):
        chosen = choose_dtype("auto", "cpu")
        explicit = choose_dtype("bfloat16", "cpu")
    assert chosen == (torch.bfloat16 if has_units else torch.float32) and explicit == torch.bfloat16
    assert f"dtype auto: {'bfloat16' if has_units else 'float32'}, since " in caplog.text  # the reason, logged
    slower = "no bf16 matrix instructions: slower than float32" in caplog.text
    assert slower == (not has_units)  # bf16 asked for where it does not pay runs, with a warning
    record = compute_record(chosen, "cpu")
    assert record["dtype"] == ("bfloat16" if has_units else "float32")
    assert record["bf16_matrix_units"] == bf16_matrix_units() and record["cpu_capability"]
    assert RunTrainingArguments(output_dir="unused", use_cpu=True, bf16="auto").bf16 == bool(has_units)


def test_an_unknown_dtype_names_the_choices():
    with pytest.raises(ValueError, match=r"^dtype 'fp16': choose one of auto, float32, bfloat16$"):
        choose_dtype("fp16")
    with pytest.raises(ValueError, match=r"bf16 'sometimes': choose true, false or auto"):
        RunTrainingArguments(output_dir="unused", use_cpu=True, bf16="sometimes")


def test_the_model_in_bf16_stays_within_a_cosine_of_0_999_at_every_length():
    torch.manual_seed(0)
    fp32 = sharpen(NomicBertModel(tiny_config())).eval()
    bf16 = NomicBertModel(tiny_config()).eval()
    bf16.load_state_dict(fp32.state_dict())
    bf16.to(torch.bfloat16)

    def pooled(model, ids, mask):
        with torch.inference_mode():
            states = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        return (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    for length in LENGTHS:  # single texts, up to 4x the trained length (dynamic NTK)
        ids = random_ids(1, length, seed=length)
        mask = torch.ones_like(ids)
        assert F.cosine_similarity(pooled(bf16, ids, mask), pooled(fp32, ids, mask)).item() >= 0.999, length
    ids = random_ids(4, 600, seed=1)  # a mixed padded batch, padded on the right
    mask = (torch.arange(600)[None] < torch.tensor([[600], [37], [250], [8]])).long()
    assert F.cosine_similarity(pooled(bf16, ids, mask), pooled(fp32, ids, mask)).min().item() >= 0.999


def test_an_embedder_loads_in_bf16_by_model_kwargs_and_its_folder_stays_fp32(embedder_dir):
    texts = ["search_query: what is rotary position embedding",
             "search_document: " + "Rotary embeddings rotate query and key vectors by position. " * 60]
    fp32 = SentenceTransformer(str(embedder_dir), device="cpu", trust_remote_code=True)
    bf16 = SentenceTransformer(str(embedder_dir), device="cpu", trust_remote_code=True,
                               model_kwargs={"dtype": torch.bfloat16})
    assert {p.dtype for p in bf16[0].auto_model.parameters()} == {torch.bfloat16}
    expected, actual = fp32.encode(texts), bf16.encode(texts)
    assert actual.dtype == expected.dtype == np.float32  # sentence-transformers hands back fp32 arrays
    assert F.cosine_similarity(torch.from_numpy(actual), torch.from_numpy(expected)).min().item() >= 0.999
    assert {tensor.dtype for tensor in load_file(embedder_dir / "model.safetensors").values()} == {torch.float32}


def test_the_mteb_loader_computes_in_the_dtype_asked(embedder_dir):
    meta = embedder_model_meta(embedder_dir, name="test/bf16", dtype="bfloat16")
    encoder = meta.load_model()
    assert {p.dtype for p in encoder.model[0].auto_model.parameters()} == {torch.bfloat16}
    assert meta.memory_usage_mb == round(meta.n_parameters * 2 / 2**20)
