"""Retrieval on int8 and binary embeddings: separate cached runs, shared int8 calibration, Hamming ranking, the card."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from evaluation_data import write_retrieval_task, write_sts_task
from huggingface_hub import ModelCard
from mteb.results import TaskResult
from script_loader import load_script
from sentence_transformers import quantize_embeddings
from sentence_transformers.util import cos_sim

from nomic_bert_hf.evaluation import (
    QuantizedIndex,
    embedder_model_meta,
    evaluate_embedder,
    resolve_tasks,
)
from nomic_bert_hf.evaluation.quantization import quantize
from nomic_bert_hf.hub.publish import build_repo_folder
from nomic_bert_hf.model.embedder import build_embedder, save_embedder
from nomic_bert_hf.model.embedder_folder import weights_digest

NAME = "test/nomic-embed-text"
REPO = Path(__file__).resolve().parents[1]
SCRIPT = "evaluation/mteb_eval.py"
PRECISIONS = ("float32", "int8", "binary")


@pytest.fixture(scope="module")
def embedder_dir(encoder_dir, tmp_path_factory):
    return save_embedder(build_embedder(encoder_dir), tmp_path_factory.mktemp("model") / "nomic-embed-text")


@pytest.fixture(scope="module")
def evaluated(embedder_dir, tmp_path_factory):
    """The evaluation command on a retrieval and an STS task, in float32, int8 and binary."""
    root = tmp_path_factory.mktemp("quantized")
    tasks = [write_retrieval_task(root / "command-retrieval"), write_sts_task(root / "everyday-sts")]
    results_dir = root / "results"
    load_script(SCRIPT).main([str(REPO / "evaluation/configs/mteb_eval/tiny.yaml"), "--model_name_or_path",
                              str(embedder_dir), "--model_name", NAME, "--output_dir", str(results_dir),
                              "--tasks", *map(str, tasks), "--precisions", *PRECISIONS])
    run = results_dir / "results" / "test__nomic-embed-text" / weights_digest(embedder_dir)
    folders = {"float32": run, "int8": run / "experiments" / "precision_int8",
               "binary": run / "experiments" / "precision_binary"}
    return {"results_dir": results_dir, "tasks": tasks, "folders": folders}


def retrieval_scores(folders: dict) -> dict[str, float]:
    return {precision: TaskResult.from_disk(folder / "command-retrieval.json").get_score()
            for precision, folder in folders.items()}


def test_quantized_retrieval_is_a_separate_cached_run(evaluated, embedder_dir, capsys):
    folders = evaluated["folders"]
    for precision in ("int8", "binary"):
        meta = json.loads((folders[precision] / "model_meta.json").read_text())
        assert meta["experiment_kwargs"] == {"precision": precision}
        assert not (folders[precision] / "everyday-sts.json").exists()  # STS is scored in float32 only
        assert "| command-retrieval |" in (folders[precision] / "precisions.md").read_text()
    assert (folders["float32"] / "everyday-sts.json").is_file()
    scores = retrieval_scores(folders)
    assert all(0 <= score <= 1 for score in scores.values())

    def refuse_to_load(*args, **kwargs):
        raise AssertionError("a cached evaluation loaded the model")

    tasks = resolve_tasks([str(evaluated["tasks"][0])])
    for precision in ("int8", "binary"):
        meta = embedder_model_meta(embedder_dir, name=NAME, precision=precision)
        (again,) = evaluate_embedder(meta.model_copy(update={"loader": refuse_to_load}), tasks,
                                     results_dir=evaluated["results_dir"], show_progress_bar=False).task_results
        assert again.get_score() == pytest.approx(scores[precision])


def test_int8_queries_and_documents_share_the_corpus_ranges():
    generator = np.random.default_rng(0)
    documents = generator.normal(size=(40, 16)).astype(np.float32)
    index = QuantizedIndex("int8")
    index.add_documents(documents, [f"d{i}" for i in range(40)])
    np.testing.assert_array_equal(index.ranges, [documents.min(0), documents.max(0)])
    query = documents[:3]  # quantized in another call, as mteb encodes queries: the same codes as the documents
    np.testing.assert_array_equal(quantize(query, "int8", index.ranges), index.documents[:3])
    assert not np.array_equal(quantize_embeddings(query, "int8"), index.documents[:3])  # per-call ranges differ
    _, positions = index.search(query, 1, cos_sim)
    assert positions == [[0], [1], [2]]


def test_binary_scores_rank_as_hamming_distance_in_search_and_reranking():
    generator = np.random.default_rng(1)
    queries, documents = generator.normal(size=(4, 64)), generator.normal(size=(30, 64))
    index = QuantizedIndex("binary")
    index.add_documents(documents, [f"d{i}" for i in range(30)])
    bits = [np.unpackbits(quantize_embeddings(x, "ubinary"), axis=-1) for x in (queries, documents)]
    hamming = (bits[0][:, None, :] != bits[1][None, :, :]).sum(-1)
    scores, positions = index.search(queries, 30, cos_sim)
    for row in range(4):
        assert sorted(positions[row]) == list(range(30))
        assert np.all(np.diff(hamming[row, positions[row]]) >= 0)  # best first = fewest differing bits
        np.testing.assert_allclose(scores[row], 1 - 2 * hamming[row, positions[row]] / 64, atol=1e-6)
    candidates = {"q0": ["d5", "d9", "d2"]}
    scores, positions = index.search(queries[:1], 2, cos_sim, top_ranked=candidates, query_idx_to_id={0: "q0"})
    expected = np.argsort(hamming[0, [5, 9, 2]], kind="stable")[:2]
    assert hamming[0, [5, 9, 2]][positions[0]].tolist() == hamming[0, [5, 9, 2]][expected].tolist()
    assert max(positions[0]) < 3  # positions in the query's own candidate list


def test_unknown_precision_is_refused_with_the_choices(embedder_dir):
    with pytest.raises(ValueError, match=r"unknown precision 'fp16': choose from float32, int8, binary"):
        embedder_model_meta(embedder_dir, precision="fp16")
    with pytest.raises(ValueError, match=r"unknown precision 'int4'"):
        load_script(SCRIPT).main(["--model_name_or_path", str(embedder_dir), "--tasks", "STSBenchmark",
                                  "--precisions", "float32", "int4"])
    with pytest.raises(ValueError, match="float32 or int8|int8 or binary"):
        QuantizedIndex("float32")
    assert torch.equal(quantize(np.array([[0.5, -0.1]]), "binary"), torch.tensor([[1, -1]], dtype=torch.int8))


def test_card_shows_the_quantized_scores_but_model_index_keeps_float32(evaluated, embedder_dir, tmp_path):
    folder = build_repo_folder(embedder_dir, tmp_path / "nomic-embed-text", repo_id=NAME,
                               results_dirs=[evaluated["results_dir"]])
    card = ModelCard.load(folder / "README.md")
    scores = retrieval_scores(evaluated["folders"])
    row = (f"| command-retrieval | {100 * scores['float32']:.2f} | {100 * scores['int8']:.2f} | "
           f"{100 * (scores['int8'] - scores['float32']):+.2f} | {100 * scores['binary']:.2f} | "
           f"{100 * (scores['binary'] - scores['float32']):+.2f} |")
    assert "### Quantized embeddings" in card.text and row in card.text
    assert 'precision="ubinary"' in card.text
    index = [(result.dataset_name, result.metric_value) for result in card.data.eval_results]
    assert sorted(name for name, _ in index) == ["command-retrieval", "everyday-sts"]
    assert dict(index)["command-retrieval"] == pytest.approx(scores["float32"])
    plain = build_repo_folder(embedder_dir, tmp_path / "plain", repo_id=NAME)
    assert "Quantized embeddings" not in (plain / "README.md").read_text()
