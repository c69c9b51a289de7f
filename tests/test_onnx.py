"""ONNX serving: `nomic-bert-export` writes onnx/ as sentence-transformers lays it out, `load_onnx_embedder` runs it
with the stored prompts, and the graphs give PyTorch's embeddings from 8 to 8192 tokens, alone or in mixed batches."""

import json
import shutil

import numpy as np
import pytest
import torch
from docstrings import docstring_pairs
from hub_copies import cache_as_hub_model
from sentence_transformers import SentenceTransformer

from nomic_bert_hf.model.embedder import build_embedder, save_embedder
from nomic_bert_hf.serving.onnx_embedder import length_groups, load_onnx_embedder
from nomic_bert_hf.serving.onnx_export import export_onnx, main

LENGTHS = [8, 512, 2048, 4096, 8192]  # tokens, prompt and special tokens included; the model was trained at 2048
FP32_TOLERANCE = 1e-4  # max abs difference of normalised embeddings
INT8_MIN_COSINE = 0.99  # the stated tolerance of the int8 graph, on the normalised embeddings of these texts


@pytest.fixture(scope="module")
def long_text() -> str:
    """Real text, well over 8192 tokens: the standard library's docstrings, one after another."""
    return " ".join(row["document"] for row in docstring_pairs()["functions"][:1500])


@pytest.fixture(scope="module")
def exported_dir(encoder_dir, tmp_path_factory):
    """A tiny embedder (trained length 2048, inputs up to 8192) with fp32, optimised and int8 graphs."""
    folder = save_embedder(build_embedder(encoder_dir), tmp_path_factory.mktemp("onnx") / "nomic-embed-text")
    main([str(folder), "--quantize", "int8", "--optimize"])
    return folder


@pytest.fixture(scope="module")
def torch_embedder(exported_dir):
    return SentenceTransformer(str(exported_dir), trust_remote_code=True, device="cpu")


def truncated(model: SentenceTransformer, length: int) -> SentenceTransformer:
    model.max_seq_length = length
    return model


def test_export_writes_sentence_transformers_onnx_layout(exported_dir):
    assert sorted(path.name for path in (exported_dir / "onnx").iterdir()) == [
        "model.onnx", "model_optimized.onnx", "model_qint8.onnx",
    ]
    assert not [path.name for path in exported_dir.iterdir() if path.name.startswith(".")]  # no staging left
    import onnx

    graph = onnx.load(str(exported_dir / "onnx" / "model.onnx")).graph
    assert [value.name for value in graph.input] == ["input_ids", "token_type_ids", "attention_mask"]
    assert [value.name for value in graph.output] == ["last_hidden_state"]
    dims = [[dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim] for value in graph.input]
    assert all(isinstance(size, str) for shape in dims for size in shape)  # dynamic batch and sequence axes


def test_onnx_embedder_keeps_prompts_length_and_similarity(exported_dir, torch_embedder):
    model = load_onnx_embedder(exported_dir)
    assert model.max_seq_length == 8192
    assert model.prompts == torch_embedder.prompts
    assert model.similarity_fn_name == "cosine"
    query, document = model.encode_query(["how to sort a list"]), model.encode_document(["how to sort a list"])
    assert np.abs(query - document).max() > 1e-3  # the prompts reached the graph


@pytest.mark.parametrize("length", LENGTHS)
def test_onnx_fp32_equals_pytorch_on_single_texts(exported_dir, torch_embedder, long_text, length):
    model = truncated(load_onnx_embedder(exported_dir), length)
    assert len(model.tokenize([long_text])["input_ids"][0]) == length
    expected = truncated(torch_embedder, length).encode_document([long_text])
    np.testing.assert_allclose(model.encode_document([long_text]), expected, atol=FP32_TOLERANCE, rtol=0)


def mixed_texts(long_text: str) -> list[str]:
    """Texts of about 10, 600, 2,500 and 5,000 tokens: one padded batch with rows on both sides of 2048."""
    words = long_text.split()
    return [" ".join(words[:count]) for count in (8, 450, 1900, 3800)]


@pytest.mark.parametrize("file_name", ["onnx/model.onnx",
                                       pytest.param("onnx/model_optimized.onnx", marks=pytest.mark.slow)])
def test_mixed_batches_equal_pytorch_and_single_texts(exported_dir, torch_embedder, long_text, file_name):
    """One padded batch through the graph (the loader's length groups switched off), rows on both sides of 2048."""
    texts = mixed_texts(long_text)
    model = truncated(load_onnx_embedder(exported_dir, file_name), 8192)
    model[0].model.group_tokens = 10**9
    batched = model.encode_query(texts, batch_size=len(texts))
    alone = np.concatenate([model.encode_query([text]) for text in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=0)  # independent of batch-mates
    expected = truncated(torch_embedder, 8192).encode_query(texts, batch_size=2)
    np.testing.assert_allclose(batched, expected, atol=FP32_TOLERANCE, rtol=0)


def test_length_groups_bound_the_padded_work():
    lengths = [3, 300, 0, 120, 250, 40, 700]
    groups = length_groups(lengths, max_tokens=512)
    assert sorted(row for group in groups for row in group) == list(range(len(lengths)))
    assert groups[0] == [6]  # longer than the bound: alone
    for group in groups:
        assert [lengths[row] for row in group] == sorted((lengths[row] for row in group), reverse=True)
        assert len(group) == 1 or len(group) * lengths[group[0]] <= 512


def test_grouped_batches_equal_one_padded_batch(exported_dir, long_text):
    words = long_text.split()
    texts = [" ".join(words[start:start + count]) for start, count in ((0, 5), (50, 200), (400, 90), (900, 30))]
    grouped = load_onnx_embedder(exported_dir)
    assert len(length_groups(grouped.preprocess(texts)["attention_mask"].sum(1).tolist())) > 1
    padded = load_onnx_embedder(exported_dir)
    padded[0].model.group_tokens = 10**9
    np.testing.assert_allclose(grouped.encode_document(texts), padded.encode_document(texts), atol=1e-6, rtol=0)


def test_int8_stays_within_stated_tolerance(exported_dir, torch_embedder, long_text):
    texts = mixed_texts(long_text)
    quantized = load_onnx_embedder(exported_dir, "onnx/model_qint8.onnx").encode_document(texts, batch_size=4)
    expected = truncated(torch_embedder, 8192).encode_document(texts)
    cosines = (quantized * expected).sum(-1)
    assert cosines.min() >= INT8_MIN_COSINE, cosines
    assert np.abs(quantized - expected).max() > 1e-6  # really quantized


def test_hub_ids_export_into_a_copy_and_load(exported_dir, tmp_path):
    """A Hub id is exported into a copy (the cache is never written), and the loader reads onnx/ from a Hub id."""
    source = tmp_path / "source"
    shutil.copytree(exported_dir, source, ignore=shutil.ignore_patterns("onnx"))
    cache_as_hub_model(source, "someone/nomic-embed-tiny")
    with pytest.raises(ValueError, match="not a local folder"):
        export_onnx("someone/nomic-embed-tiny")
    onnx_dir = export_onnx("someone/nomic-embed-tiny", tmp_path / "copy")
    assert (tmp_path / "copy" / "modules.json").is_file() and (onnx_dir / "model.onnx").is_file()

    cache_as_hub_model(tmp_path / "copy", "someone/nomic-embed-tiny-onnx")
    model = load_onnx_embedder("someone/nomic-embed-tiny-onnx")
    expected = load_onnx_embedder(exported_dir).encode_query(["how to sort a list"])
    np.testing.assert_allclose(model.encode_query(["how to sort a list"]), expected, atol=1e-6, rtol=0)


def test_not_a_nomic_bert_folder_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not a NomicBERT model.*'bert'"):
        export_onnx(tmp_path)
    assert not (tmp_path / "onnx").exists()


@pytest.fixture
def embedder_copy(exported_dir, tmp_path):
    folder = tmp_path / "embedder"
    shutil.copytree(exported_dir, folder, ignore=shutil.ignore_patterns("onnx"))
    return folder


def test_unknown_quantization_mode_is_refused_before_anything_is_written(embedder_copy):
    before = sorted(embedder_copy.iterdir())
    with pytest.raises(ValueError, match="int4 is not offered; choose from int8"):
        export_onnx(embedder_copy, quantize=["int4"])
    assert sorted(embedder_copy.iterdir()) == before


def test_an_opset_the_runtime_cannot_run_leaves_no_onnx_folder(embedder_copy):
    before = sorted(embedder_copy.iterdir())
    with pytest.raises(RuntimeError, match=r"cannot run model.onnx \(opset 26\)"):
        export_onnx(embedder_copy, opset=26)
    assert sorted(embedder_copy.iterdir()) == before  # neither onnx/ nor a staging folder


def test_an_existing_onnx_folder_is_kept_without_overwrite(embedder_copy):
    (embedder_copy / "onnx").mkdir()
    (embedder_copy / "onnx" / "model.onnx").write_text("the user's file")
    with pytest.raises(FileExistsError):
        export_onnx(embedder_copy)
    assert (embedder_copy / "onnx" / "model.onnx").read_text() == "the user's file"


def test_graph_runs_the_dynamic_ntk_of_each_sequence(exported_dir, long_text):
    """Above the trained length the graph must scale RoPE per sequence: with the scaling switched off in PyTorch the
    embeddings of a 4096-token text differ, so the equality above is not vacuous."""
    model = truncated(load_onnx_embedder(exported_dir), 4096)
    unscaled = SentenceTransformer(str(exported_dir), trust_remote_code=True, device="cpu",
                                   config_kwargs={"rotary_scaling_factor": None})
    with torch.no_grad():
        difference = np.abs(model.encode_query([long_text]) - truncated(unscaled, 4096).encode_query([long_text]))
    assert difference.max() > 5 * FP32_TOLERANCE
