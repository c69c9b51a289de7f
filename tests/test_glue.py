"""evaluation/glue.py end to end on a tiny model, with a few rows of each task in GLUE's own column format."""

import json
import math
from pathlib import Path

import evaluate
import pytest
from scipy.stats import pearsonr, spearmanr
from script_loader import load_script

from nomic_bert_hf.evaluation.glue import (
    TASKS,
    load_task,
    markdown_table,
    summarize,
    task_order,
)

ROOT = Path(__file__).resolve().parents[1]
METRIC = ROOT / "evaluation" / "metrics" / "glue" / "glue.py"

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PAIRS = [
    ("The company said its profit rose in the third quarter.", "Profits at the company grew in the third quarter."),
    ("A man is playing a guitar on the stage.", "A woman is slicing an onion in the kitchen."),
    ("The meeting was moved to Friday afternoon.", "The meeting now takes place on Friday afternoon."),
    ("Rain is expected across the north this weekend.", "The museum opens a new exhibition next month."),
    ("She bought a red bicycle for her daughter.", "Her daughter received a red bicycle from her."),
    ("The river flooded several villages last spring.", "The price of coffee fell sharply this year."),
]
SENTENCES = [
    ("The book that you gave me is on the table.", 1),
    ("The book on the table you me gave is.", 0),
    ("Children love playing in the park after school.", 1),
    ("Him and me goes to the store yesterday.", 0),
    ("This film is a warm, funny and beautifully acted story.", 1),
    ("The plot is dull and the jokes fall completely flat.", 0),
]
QUESTIONS = [
    ("How do I learn to play the piano?", "What is the best way to learn piano?"),
    ("What is the capital of Australia?", "How tall is the Eiffel Tower?"),
    ("How can I improve my English writing?", "What are good ways to get better at writing in English?"),
    ("Why is the sky blue?", "What time does the bank open on Saturday?"),
]
QNLI = [
    ("What is the capital of France?", "Paris is the capital and largest city of France.", 0),
    ("When did the war end?", "The museum holds paintings from the eighteenth century.", 1),
    ("Who wrote Hamlet?", "Hamlet is a tragedy written by William Shakespeare.", 0),
    ("How many legs does a spider have?", "Many people are afraid of heights.", 1),
]


def rows(task, split):
    """A few rows of `task` in GLUE's column format (nyu-mll/glue), real sentences, every label present."""
    if task in ("cola", "sst2"):
        data = [{"sentence": s, "label": label} for s, label in SENTENCES]
    elif task in ("mrpc", "rte"):
        data = [{"sentence1": a, "sentence2": b, "label": (i % 2) if task == "mrpc" else 1 - i % 2}
                for i, (a, b) in enumerate(PAIRS)]
    elif task == "stsb":
        data = [{"sentence1": a, "sentence2": b, "label": 4.5 - (i % 2) * 4 + i * 0.1}
                for i, (a, b) in enumerate(PAIRS)]
    elif task == "qqp":
        data = [{"question1": a, "question2": b, "label": 1 - i % 2} for i, (a, b) in enumerate(QUESTIONS)]
    elif task == "mnli":
        data = [{"premise": a, "hypothesis": b, "label": i % 3} for i, (a, b) in enumerate(PAIRS)]
    else:
        data = [{"question": q, "sentence": s, "label": label} for q, s, label in QNLI]
    return data if split == "train" else data[:4]


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue-data")
    for task in TASKS.values():
        (root / task.name).mkdir()
        for split in ("train", task.validation_split):
            lines = [json.dumps({**row, "idx": i}) for i, row in enumerate(rows(task.name, split))]
            (root / task.name / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def glue_script():
    return load_script("evaluation/glue.py")


def test_all_eight_tasks_end_to_end(glue_script, glue_dir, mlm_dir, tmp_path):
    output_dir = tmp_path / "glue"
    summary = glue_script.main([
        str(ROOT / "evaluation" / "configs" / "glue" / "tiny.yaml"), "--model_name_or_path", str(mlm_dir),
        "--data_dir", str(glue_dir), "--output_dir", str(output_dir),
    ])
    assert list(summary["tasks"]) == ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"]
    assert len(summary["runs"]) == 8 * 2
    for name, result in summary["tasks"].items():
        assert set(result["metrics"]) == set(TASKS[name].metrics) and result["seeds"] == [0, 1]
        assert all(math.isfinite(value) and -1 <= value <= 1 for value in result["metrics"].values())
    for run in summary["runs"]:  # RTE, STS-B and MRPC start from the MNLI model of the same seed
        if TASKS[run["task"]].from_mnli:
            assert run["start"] == str(output_dir / "mnli" / f"lr0.0001-bs4-seed{run['seed']}" / "encoder")
        else:
            assert run["start"] == str(mlm_dir)
    results = output_dir / "results"
    assert json.loads((results / "results.json").read_text())["average"] == pytest.approx(summary["average"])
    table = (results / "results.md").read_text()
    assert "| model | CoLA | SST-2 | MRPC | STS-B | QQP | MNLI | QNLI | RTE | average |" in table
    assert (results / "config.yaml").is_file()
    with pytest.raises(FileExistsError, match="not empty"):
        glue_script.main(["--model_name_or_path", str(mlm_dir), "--data_dir", str(glue_dir),
                          "--output_dir", str(output_dir)])


def test_median_over_seeds_of_the_best_setting():
    settings = ((1e-5, [0.6, 0.9, 0.7]), (2e-5, [0.65, 0.66, 0.64]))
    runs = [{"task": "rte", "learning_rate": lr, "batch_size": 16, "seed": seed, "metrics": {"accuracy": value}}
            for lr, values in settings for seed, value in enumerate(values)]
    summary = summarize(runs)
    assert summary["tasks"]["rte"]["score"] == 0.7 and summary["tasks"]["rte"]["learning_rate"] == 1e-5
    assert summary["average"] == 0.7
    assert "| my-model | 0.700 | 0.700 |" in markdown_table(summary, "my-model")


def test_glue_metric_module():
    mrpc = evaluate.load(str(METRIC), "mrpc").compute(predictions=[1, 0, 1, 1], references=[1, 1, 1, 0])
    assert mrpc == pytest.approx({"accuracy": 0.5, "f1": 2 / 3})
    cola = evaluate.load(str(METRIC), "cola").compute(predictions=[1, 0, 1, 0], references=[1, 0, 1, 0])
    assert cola == {"matthews_correlation": 1.0}
    predictions, references = [0.5, 2.0, 3.1, 4.8], [1.0, 1.5, 3.0, 5.0]
    stsb = evaluate.load(str(METRIC), "stsb").compute(predictions=predictions, references=references)
    assert stsb == pytest.approx({"pearson": pearsonr(predictions, references)[0],
                                  "spearmanr": spearmanr(predictions, references)[0]}, rel=1e-6)


def test_bad_task_data_and_choices_are_named(glue_dir, tmp_path):
    (tmp_path / "rte").mkdir()
    (tmp_path / "rte" / "train.jsonl").write_text(json.dumps({"premise": "a", "hypothesis": "b", "label": 0}) + "\n")
    (tmp_path / "rte" / "validation.jsonl").write_text((glue_dir / "rte" / "validation.jsonl").read_text())
    with pytest.raises(ValueError, match=r"RTE train data lacks the columns \['sentence1', 'sentence2'\]"):
        load_task(TASKS["rte"], tmp_path)
    with pytest.raises(FileNotFoundError, match="cola/train"):
        load_task(TASKS["cola"], tmp_path)
    with pytest.raises(ValueError, match="RTE start from the MNLI model: add mnli"):
        task_order(["rte"], from_mnli=True)
    assert [task.name for task in task_order(["rte", "mnli", "cola"], from_mnli=True)] == ["mnli", "cola", "rte"]
    with pytest.raises(ValueError, match="unknown GLUE tasks"):
        task_order(["wnli"], from_mnli=False)
