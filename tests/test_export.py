"""Graphs of the model: torch.export (static and dynamic shapes), ONNX through the dynamo exporter, torch.compile with
fullgraph, and torch.jit.trace. Each graph must give the eager outputs on masks other than its example's, including
dynamic NTK computed per sequence above the trained length."""

import pytest
import torch
from conftest import random_ids, sharpen, tiny_config

from nomic_bert_hf import (
    NomicBertForPreTraining,
    NomicBertForSequenceClassification,
    NomicBertForTokenClassification,
    NomicBertModel,
)

HEADS = [NomicBertModel, NomicBertForPreTraining, NomicBertForSequenceClassification, NomicBertForTokenClassification]
TRAINED = 32  # max_trained_positions of these models: the 40-token rows below run with a scaled RoPE base


def build(model_class):
    torch.manual_seed(0)
    config = tiny_config(max_trained_positions=TRAINED, num_labels=3)
    return sharpen(model_class(config)).eval()


def batch(lengths: list[int], length: int, side: str = "right", seed: int = 0):
    ids = random_ids(len(lengths), length, seed=seed)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    if side == "left":
        mask = mask.flip(1)
    return {"input_ids": ids, "attention_mask": mask}


# Masks unlike the example's (which has no padding): unequal lengths, left padding, an empty row, rows above TRAINED
OTHER_BATCHES = [
    batch([3, 9, 6], 9),
    batch([40, 7], 44, side="left", seed=1),
    batch([12, 0, 45], 45, seed=2),
    batch([1], 1, seed=3),
]
EXAMPLE = batch([10, 10], 10, seed=4)


def outputs_of(model_output) -> list[torch.Tensor]:
    """Every tensor a forward returned (a ModelOutput, a dict or a tuple), in order."""
    return list(model_output.values()) if hasattr(model_output, "values") else list(model_output)


def assert_same_as_eager(model, run, batches=OTHER_BATCHES):
    for inputs in batches:
        with torch.no_grad():
            expected, got = outputs_of(model(**inputs)), outputs_of(run(inputs))
        assert len(got) == len(expected)
        for got_tensor, expected_tensor in zip(got, expected):
            torch.testing.assert_close(got_tensor, expected_tensor, atol=1e-5, rtol=0)


def dynamic(batch_max=64, length_max=8192):
    dims = {0: torch.export.Dim("batch", max=batch_max), 1: torch.export.Dim("length", max=length_max)}
    return {"input_ids": dims, "attention_mask": dims}


@pytest.mark.parametrize("model_class", HEADS, ids=lambda c: c.__name__)
def test_exported_program_with_dynamic_batch_and_length_matches_eager(model_class):
    model = build(model_class)
    program = torch.export.export(model, (), dict(EXAMPLE), dynamic_shapes=dynamic())
    assert_same_as_eager(model, lambda inputs: program.module()(**inputs))


def test_exported_program_with_static_shapes_matches_eager_on_other_masks():
    model = build(NomicBertModel)
    program = torch.export.export(model, (), batch([44, 44], 44))
    others = [batch([44, 20], 44, seed=5), batch([5, 44], 44, side="left", seed=6), batch([0, 33], 44, seed=7)]
    assert_same_as_eager(model, lambda inputs: program.module()(**inputs), others)


def test_export_beyond_n_positions_names_the_length_limit():
    model = build(NomicBertModel)
    with pytest.raises(Exception, match=r"Dim\('length', max=8192\)"):  # torch's suggested fix
        torch.export.export(model, (), dict(EXAMPLE), dynamic_shapes=dynamic(length_max=16384))


def test_onnx_export_runs_in_onnxruntime_like_eager(tmp_path):
    import onnxruntime  # the [onnx] extra, part of [test]: a missing install fails here rather than skipping

    model = build(NomicBertModel)
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        model, (), str(path), kwargs=dict(EXAMPLE), dynamic_shapes=dynamic(), dynamo=True,
        input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(inputs):
        feeds = {name: tensor.numpy() for name, tensor in inputs.items()}
        return (torch.from_numpy(session.run(["last_hidden_state"], feeds)[0]),)

    assert_same_as_eager(model, run)


@pytest.mark.parametrize("model_class", [HEADS[0], *(pytest.param(head, marks=pytest.mark.slow)
                                                      for head in HEADS[1:])], ids=lambda c: c.__name__)
def test_full_graph_compiles_without_breaks(model_class):
    """aot_eager: dynamo must capture the whole forward as one graph (fullgraph) and functionalise it."""
    model = build(model_class)
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend="aot_eager")
    assert_same_as_eager(model, lambda inputs: compiled(**inputs))


def test_inductor_compiled_model_matches_eager():
    torch._dynamo.reset()
    model = build(NomicBertModel)
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    assert_same_as_eager(model, lambda inputs: compiled(**inputs), OTHER_BATCHES[:2])


def test_jit_trace_keeps_the_mask_an_input():
    model = build(NomicBertModel)
    example = batch([10, 6], 10, seed=8)  # padding in the example: a trace must not bake it in
    traced = torch.jit.trace(model, (example["input_ids"], example["attention_mask"]), strict=False)
    assert_same_as_eager(model, lambda inputs: traced(inputs["input_ids"], inputs["attention_mask"]))


def test_masked_lm_loss_is_the_same_in_a_graph():
    """A graph decodes every position (its shapes cannot depend on the labels); the loss must not change."""
    model = build(NomicBertForPreTraining)
    inputs = batch([9, 5], 9, seed=9)
    labels = torch.where(torch.rand(inputs["input_ids"].shape, generator=torch.Generator().manual_seed(0)) < 0.4,
                         inputs["input_ids"], -100)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        eager, graph = model(**inputs, labels=labels), compiled(**inputs, labels=labels)
    assert eager.logits.shape[0] == int((labels != -100).sum()) and graph.logits.shape[:2] == labels.shape
    torch.testing.assert_close(graph.loss, eager.loss, atol=1e-5, rtol=0)
