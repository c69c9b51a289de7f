"""The main job: Nomic Embed's three-stage recipe on one corpus, evaluated, into a publishable `nomic-embed-text/`.

    python training/pipeline.py                                   # CPU default on the shipped corpus (~15 minutes)
    python training/pipeline.py training/configs/pipeline/cpu-large.yaml
    python training/pipeline.py training/configs/pipeline/nomic-embed-text-v1.5.yaml \\
        --launcher "torchrun --nproc_per_node 8"                  # GPUs; or --launcher "accelerate launch --config_file ..."
    python training/pipeline.py --reproduce nomic-embed-text      # re-run a published folder's recipe from its records
    python training/pipeline.py training/configs/pipeline/nomic-embed-text-v1.5.yaml --plan --tokens_per_second 1e6

Stages, each its own process (under the launcher for the training stages), each writing `<output_dir>/<stage>/`:
  1. mlm:       masked-language-model pretraining on the corpus's text (training/mlm.py)
  2. pretrain:  weakly supervised contrastive pretraining on the stage-2 pair datasets (training/contrastive.py)
  3. mine:      hard negatives for the fine-tuning datasets, mined with the stage-2 model or a given embedder
                (training/mine_negatives.py)
  4. finetune:  contrastive fine-tuning with those negatives (training/contrastive.py)
  5. evaluate:  the held-out tasks through mteb (evaluation/mteb_eval.py); long-context retrieval by length
                (evaluation/long_context.py), Hub tasks and GLUE when configured
  6. publish:   `publish_dir` with weights, code, tokenizer, prompts and a model card with the results
                (nomic_bert_hf.hub.publish, the nomic-bert-publish command)

Stages exchange files: each stage's model is the previous stage's `final/` (`--model_name_or_path`), and the datasets
the pipeline chooses for a stage are written into `<output_dir>/<stage>.train_datasets.yaml` and passed as
`--train_datasets <file>`; the stage records the mapping itself in its `final/config.yaml`.

The stages read the corpus's datasets (`stage_data: corpus`, the CPU default) or the datasets their own configs name
(`stage_data: configs`: the published recipes, on Nomic's data from the Hub or a `data_mirror`); in the second case a
fine-tuning dataset that carries mined negatives is used as it is, and only the others are mined.

`--plan` resolves every dataset (splits, rows, columns, revision) and every training stage's steps, tokens, global
batch and checkpoint size, prints them (with `--tokens_per_second`, the wall time too) and trains nothing; missing
datasets, splits or columns fail there.

A stage whose `final/` exists is finished and skipped (list it in `--rerun` to redo it); an interrupted one resumes from
its last checkpoint. Every stage's `final/` and the published folder get `provenance.json`: code and library versions,
the data read (the corpus's file hashes, or each dataset's split, rows and revision), the pipeline config with its seed
and the resolved config of every stage.
"""

import importlib.util
import logging
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from stages import (
    DEFAULT_CORPUS,
    StageClock,
    datasets_file,
    is_finished,
    is_published,
    load_provenance,
    pair_datasets,
    provenance,
    recipe_config,
    record_provenance,
    resume_arguments,
    run_stage,
    stage_datasets,
)

from nomic_bert_hf import NomicBertConfig
from nomic_bert_hf.data.corpus import Corpus
from nomic_bert_hf.data.hub_data import inspect_split
from nomic_bert_hf.data.pair_data import parse_sources
from nomic_bert_hf.evaluation.results import (
    category_rows,
    find_runs,
    markdown_category_table,
    markdown_precision_table,
    markdown_task_table,
    other_settings,
    precision_scores,
    task_rows,
)
from nomic_bert_hf.model.embedder_folder import weights_digest
from nomic_bert_hf.tasks import column_prompts
from nomic_bert_hf.training.plan import (
    carried_negatives,
    contrastive_plan,
    encoder_parameters,
    launcher_processes,
    mlm_plan,
    render_plan,
)
from nomic_bert_hf.training.runs import FINAL_DIR
from nomic_bert_hf.utils.cli import run_command
from nomic_bert_hf.utils.compute import DTYPES, choose_dtype, compute_record, dtype_name
from nomic_bert_hf.utils.configs import mapping_setting, parse_config, save_config
from nomic_bert_hf.utils.files import atomic_file
from nomic_bert_hf.utils.provenance import write_json

logger = logging.getLogger("pipeline")
STAGES = ("mlm", "pretrain", "mine", "finetune", "evaluate", "publish")
STAGE_DATA = ("corpus", "configs")
SCRIPTS = Path(__file__).resolve().parent


@dataclass
class PipelineConfig:
    output_dir: str = field(default="runs/nomic-embed-text", metadata={"help": "Folder of the stages' outputs"})
    publish_dir: str = field(default="nomic-embed-text", metadata={"help": "The publishable model folder"})
    repo_id: str = field(default="nomic-bert-hf/nomic-embed-text", metadata={"help": "Hub id named in the card"})
    corpus: str | None = field(default=None, metadata={"help": "Corpus folder (default: training/data/default)"})
    stage_data: str = field(default="corpus", metadata={
        "help": "corpus: the stages train on the corpus; configs: on the datasets their configs name"})
    data_mirror: str | None = field(default=None, metadata={
        "help": "Folder with a copy of every Hub dataset at <data_mirror>/<org>/<name>, for every stage"})
    seed: int = field(default=42, metadata={"help": "Seed of every stage"})
    launcher: str = field(default="", metadata={"help": 'e.g. "torchrun --nproc_per_node 8" for the training stages'})
    dtype: str = field(default="auto", metadata={
        "help": "auto | float32 | bfloat16: what mining and evaluation compute in (auto: bf16 where the CPU has AMX "
                "or AVX-512 BF16, else fp32; recorded resolved). Training follows each stage config's bf16"})
    mlm_config: str = "training/configs/mlm/cpu-small.yaml"
    pretrain_config: str = "training/configs/contrastive/cpu-pretrain.yaml"
    mine_config: str = "training/configs/mining/cpu.yaml"
    finetune_config: str = "training/configs/contrastive/cpu-finetune.yaml"
    eval_config: str = "evaluation/configs/mteb_eval/default.yaml"
    mining_model: str | None = field(default=None, metadata={
        "help": "Embedder that mines the negatives (Nomic used thenlper/gte-base); default: the stage-2 model"})
    finetune_sample: int = field(default=2000, metadata={
        "help": "Pairs of each stage-2 dataset mined and added to fine-tuning (0: the stage-3 datasets alone)"})
    finetune_tasks: dict | str = field(default_factory=lambda: {"wordnet_definitions": "classification"}, metadata={
        "help": "Task prefix of a dataset during fine-tuning, where it differs from the corpus's (on the command line "
                "a YAML file holding the mapping, or JSON)"})
    long_context_config: str | None = field(default=None, metadata={"help": "Retrieval by input length, 512-8192"})
    glue_config: str | None = field(default=None, metadata={"help": "GLUE of the MLM model (data from the Hub)"})
    mlm_args: list[str] = field(default_factory=list, metadata={"help": "Extra --field value flags for the stage"})
    pretrain_args: list[str] = field(default_factory=list)
    mine_args: list[str] = field(default_factory=list)
    finetune_args: list[str] = field(default_factory=list)
    eval_args: list[str] = field(default_factory=list)
    rerun: list[str] = field(default_factory=list, metadata={"help": f"Finished stages to redo: {', '.join(STAGES)}"})
    stop_after: str | None = field(default=None, metadata={"help": "Last stage to run"})
    reproduce: str | None = field(default=None, metadata={"help": "A published folder whose recipe to run again"})
    plan: bool = field(default=False, metadata={"help": "Resolve the data and print each stage's cost; train nothing"})
    tokens_per_second: float | None = field(default=None, metadata={
        "help": "Training throughput of the launcher's processes together, for the plan's wall times"})

    def __post_init__(self):
        self.finetune_tasks = mapping_setting("finetune_tasks", self.finetune_tasks)
        if self.stage_data not in STAGE_DATA:
            raise ValueError(f"stage_data {self.stage_data!r}: choose one of {', '.join(STAGE_DATA)}")
        unknown = sorted(set(self.rerun + [self.stop_after or "mlm"]) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stages {unknown}; the stages are {', '.join(STAGES)}")


def pin_revisions(stage_config: dict, datasets_read: dict) -> dict:
    """A recorded stage config with each Hub dataset pinned to the commit the stage read (where one was resolved)."""
    def commit(record: dict) -> str | None:
        revision = record.get("revision") or ""
        return revision if re.fullmatch(r"[0-9a-f]{40}", revision) else None

    for name, entry in (stage_config.get("train_datasets") or {}).items():
        if isinstance(entry, dict) and name in datasets_read and commit(datasets_read[name]):
            entry["revision"] = commit(datasets_read[name])
    commits = {commit(record) for record in datasets_read.values()} - {None}
    if "train_data" in stage_config and len(commits) == 1:  # MLM: one data_revision for its Hub sources
        stage_config["data_revision"] = commits.pop()
    return stage_config


def reproduction_config(published: Path) -> PipelineConfig:
    """The pipeline config recorded in a published folder, set to run its recorded stage configs again into
    `<output_dir>-reproduced` and `<published>-reproduced`."""
    record = load_provenance(published)
    recorded = {**record["pipeline"], "reproduce": None, "rerun": [], "stop_after": None}
    recorded["output_dir"] = f"{recorded['output_dir']}-reproduced"
    recorded["publish_dir"] = f"{published}-reproduced"
    config_dir = Path(recorded["output_dir"]) / "recorded-configs"
    config_dir.mkdir(parents=True, exist_ok=True)
    for stage, stage_config in record["stages"].items():
        path = config_dir / f"{stage}.yaml"
        stage_config = pin_revisions(recipe_config(stage_config), record.get("datasets", {}).get(stage, {}))
        path.write_text(yaml.safe_dump(stage_config, sort_keys=True))
        recorded[f"{stage}_config"] = str(path)
    return PipelineConfig(**recorded)


def load_script(name: str):
    """A stage script of this folder as a module (for its argument dataclasses)."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def finetune_sources(config: PipelineConfig, corpus: Corpus | None, root: Path) -> tuple[dict, list]:
    """The fine-tuning datasets, and those to mine first as (name, source spec, sample size or None).

    From the corpus: its stage-3 datasets, plus a sample of each stage-2 dataset, all mined. From the config: its
    datasets, where only those without mined negatives (when the stage samples any) are mined, into files that then
    replace them."""
    datasets, to_mine = {}, []
    if corpus is not None:
        sources = [(name, spec, None) for name, spec in pair_datasets(corpus, 3).items()]
        if config.finetune_sample:
            sources += [(name, spec, config.finetune_sample) for name, spec in pair_datasets(corpus, 2).items()]
        for name, spec, sample in sources:
            spec = {**spec, "task": config.finetune_tasks.get(name, spec["task"]), "prompts": corpus.prompts(name)}
            to_mine.append((name, spec, sample))
    else:
        stage_config = yaml.safe_load(Path(config.finetune_config).read_text())
        if not stage_config.get("train_datasets"):
            raise ValueError(f"{config.finetune_config} names no train_datasets, which stage_data: configs trains on")
        datasets = dict(stage_config["train_datasets"])
        if stage_config.get("num_negatives", 0):
            for source in parse_sources(datasets, mirror=config.data_mirror):
                split = inspect_split(source.path, source.split, source.subset, source.revision, source.mirror)
                if carried_negatives(source, split.features) is None:
                    spec = {**datasets[source.name], "prompts": column_prompts(source.task)}
                    to_mine.append((source.name, spec, None))
    for name, spec, _ in to_mine:
        datasets[name] = {"path": str(root / "mine" / f"{name}.jsonl.gz"), "task": spec.get("task", "search")}
    return datasets, to_mine


def data_manifest(corpus: Corpus | None, root: Path, stage_dirs: dict[str, Path]) -> Path:
    """The data section of the model card: the corpus's manifest, or the datasets each stage read."""
    if corpus is not None:
        return corpus.root / "manifest.json"
    path = root / "data_manifest.json"
    write_json(path, stage_datasets({stage: folder / FINAL_DIR for stage, folder in stage_dirs.items()}))
    return path


def plan(config: PipelineConfig, stage_arguments: dict[str, list], finetune_datasets: dict, to_mine: list,
         inputs_dir: Path) -> str:
    """Every training stage's plan (see nomic_bert_hf.training.plan), resolved with the arguments the stage would get;
    the datasets still to be mined are planned as they are before mining (their samples' sizes as row limits), through
    a `train_datasets` file in `inputs_dir`."""
    processes = launcher_processes(config.launcher)
    cpu_safe = ["--bf16", "false"]  # parsing the GPU recipes' mixed precision needs no GPU for a plan
    mlm, contrastive = load_script("mlm"), load_script("contrastive")
    model_args, data_args, training_args = parse_config(
        (mlm.ModelArguments, mlm.DataArguments, mlm.RunTrainingArguments), [*stage_arguments["mlm"], *cpu_safe])
    parameters = encoder_parameters(NomicBertConfig(**model_args.config_overrides()))
    plans = [mlm_plan(model_args, data_args, training_args, processes, parameters)]
    unmined = {name: {key: value for key, value in spec.items() if key != "prompts"} for name, spec, _ in to_mine}
    for stage, extra, limits in (("pretrain", [], None),
                                 ("finetune", ["--train_datasets", datasets_file(inputs_dir, "unmined-finetune",
                                                                                 {**finetune_datasets, **unmined})]
                                  if to_mine else [],
                                  {name: sample for name, _, sample in to_mine})):
        parsed = parse_config((contrastive.ModelArguments, contrastive.DataArguments, contrastive.LossArguments,
                               contrastive.ContrastiveTrainingArguments),
                              [*stage_arguments[stage], *extra, *cpu_safe])
        plans.append(contrastive_plan(stage, *parsed, processes=processes, parameters=parameters, row_limits=limits))
    return render_plan(plans, config.tokens_per_second)


def main(args=None):
    (config,) = parse_config([PipelineConfig], args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    published = Path(config.reproduce) if config.reproduce else None
    if published is not None:
        plan_only, tokens_per_second = config.plan, config.tokens_per_second
        config = reproduction_config(published)
        config.plan, config.tokens_per_second = plan_only, tokens_per_second
    config.dtype = dtype_name(choose_dtype(config.dtype))  # recorded resolved, so a reproduction computes alike
    root = Path(config.output_dir).resolve()  # absolute: the stages run in the checkout, the user anywhere
    publish_dir = Path(config.publish_dir).resolve()
    stage_dirs = {stage: root / stage for stage in ("mlm", "pretrain", "finetune")}
    last = STAGES.index(config.stop_after) if config.stop_after else len(STAGES) - 1
    if last == STAGES.index("publish"):
        is_published(publish_dir, root)  # a publish_dir that is someone else's folder stops the run before training

    def should_run(stage: str, done: bool) -> bool:
        return STAGES.index(stage) <= last and (stage in config.rerun or not done)

    def training_flags(stage: str) -> list:
        """Seed, and how to start: afresh when asked to redo the stage, else resuming an interrupted run."""
        start = ["--overwrite_output_dir", "true"] if stage in config.rerun else resume_arguments(stage_dirs[stage])
        return ["--seed", config.seed, *start, *getattr(config, f"{stage}_args")]

    def finish(stage: str) -> None:
        """The pipeline's record of a finished stage, written last: without it the stage counts as unfinished."""
        record_provenance(stage_dirs[stage] / FINAL_DIR, provenance(stage, asdict(config), corpus, stage_dirs))

    # 1. The data: the corpus (checked against its manifest), or the datasets the stage configs name
    corpus = Corpus.load(Path(config.corpus or DEFAULT_CORPUS).resolve()) if config.stage_data == "corpus" else None
    mirror = ["--data_mirror", config.data_mirror] if config.data_mirror else []
    finetune_datasets, to_mine = finetune_sources(config, corpus, root)

    def stage_arguments(inputs_dir: Path) -> dict[str, list]:
        """Each training stage's config, model, folder and data; its datasets as a YAML file in `inputs_dir`."""
        return {
            "mlm": [config.mlm_config, "--output_dir", stage_dirs["mlm"], *mirror,
                    *(["--train_data", *corpus.data_files("mlm")["train"]] if corpus else [])],
            "pretrain": [config.pretrain_config, "--model_name_or_path", stage_dirs["mlm"] / FINAL_DIR,
                         "--output_dir", stage_dirs["pretrain"], *mirror,
                         *(["--train_datasets", datasets_file(inputs_dir, "pretrain", pair_datasets(corpus, 2))]
                           if corpus else [])],
            "finetune": [config.finetune_config, "--model_name_or_path", stage_dirs["pretrain"] / FINAL_DIR,
                         "--output_dir", stage_dirs["finetune"], *mirror,
                         *(["--train_datasets", datasets_file(inputs_dir, "finetune", finetune_datasets)]
                           if to_mine else [])],
        }

    if config.plan:
        with tempfile.TemporaryDirectory() as inputs_dir:  # a plan writes nothing into output_dir
            arguments = {stage: [str(a) for a in stage_args + getattr(config, f"{stage}_args")]
                         for stage, stage_args in stage_arguments(Path(inputs_dir)).items()}
            table = plan(config, arguments, finetune_datasets, to_mine, Path(inputs_dir))
        print(f"\nPlan of {config.output_dir} ({config.launcher or 'one process'}):\n\n{table}\n")
        return table
    save_config(root, config)
    arguments = stage_arguments(root)
    clock = StageClock()

    # 2. MLM pretraining on the corpus's text or the configured (possibly pre-tokenized) data
    if should_run("mlm", is_finished(stage_dirs["mlm"], "mlm")):
        with clock.timing("mlm", stage_dirs["mlm"]):
            run_stage("training/mlm.py", [*arguments["mlm"], *training_flags("mlm")], config.launcher)
        finish("mlm")

    # 3. Weakly supervised contrastive pretraining: one source per global batch, each source's task prefix
    if should_run("pretrain", is_finished(stage_dirs["pretrain"], "pretrain")):
        with clock.timing("pretrain", stage_dirs["pretrain"]):
            run_stage("training/contrastive.py", [*arguments["pretrain"], *training_flags("pretrain")],
                      config.launcher)
        finish("pretrain")

    # 4. Mine hard negatives (with the stage-2 model unless configured) for the fine-tuning datasets that carry none:
    #    from the corpus, its stage-3 datasets and a sample of each stage-2 dataset (Nomic's fine-tuning mixes many
    #    sources; the corpus's stage-3 sets alone are too narrow). One file per dataset.
    for name, spec, sample in to_mine:
        mined = root / "mine" / f"{name}.jsonl.gz"
        if should_run("mine", mined.exists()):
            prompts = spec["prompts"]
            with clock.timing("mine"):
                run_stage("training/mine_negatives.py", [
                    config.mine_config, "--model_name_or_path",
                    config.mining_model or stage_dirs["pretrain"] / FINAL_DIR,
                    "--dataset", spec["path"], "--split", spec.get("split", "train"), *mirror, "--output_file", mined,
                    *[flag for column in ("query_column", "document_column") if column in spec
                      for flag in (f"--{column}", spec[column])],
                    "--query_prompt", prompts["query"], "--document_prompt", prompts["document"],
                    "--dtype", config.dtype, "--overwrite", "true", "--seed", config.seed,
                    *(["--max_rows", sample] if sample else []), *config.mine_args,
                ])

    # 5. Fine-tuning with the mined (or released) negatives
    if should_run("finetune", is_finished(stage_dirs["finetune"], "finetune")):
        with clock.timing("finetune", stage_dirs["finetune"]):
            run_stage("training/contrastive.py", [*arguments["finetune"], *training_flags("finetune")],
                      config.launcher)
        finish("finetune")
    model = stage_dirs["finetune"] / FINAL_DIR
    results_dir = root / "evaluate"

    # 6. Evaluate on the held-out tasks through mteb (its cache skips finished tasks); long inputs and GLUE if asked
    if should_run("evaluate", done=False):
        with clock.timing("evaluate"):
            run_stage("evaluation/mteb_eval.py", [
                config.eval_config, "--model_name_or_path", model, "--model_name", config.repo_id,
                "--output_dir", results_dir, "--dtype", config.dtype,
                *(["--overwrite_strategy", "always"] if "evaluate" in config.rerun else []), *config.eval_args,
            ])
            if config.long_context_config:
                run_stage("evaluation/long_context.py", [config.long_context_config, "--model_name_or_path", model,
                                                         "--model_name", config.repo_id, "--output_dir", results_dir,
                                                         "--dtype", config.dtype])
        if config.glue_config:
            with clock.timing("glue"):
                run_stage("evaluation/glue.py", [config.glue_config, "--model_name_or_path",
                                                 stage_dirs["mlm"] / FINAL_DIR, "--output_dir", root / "glue"])
    if last < STAGES.index("publish"):
        print(f"\nWhere this run's minutes went:\n\n{clock.markdown()}\n")
        return None

    # 7. Publish: the Hub folder with weights, code, tokenizer, prompts and the model card (validated, not uploaded);
    #    the folder gets the pipeline's record from the publish step, after validation and before its rename
    published_before = is_published(publish_dir, root)
    if should_run("publish", published_before):
        glue_results = root / "glue" / "results" / "results.json"
        record = root / "publish.provenance.json"
        write_json(record, provenance("publish", asdict(config), corpus, stage_dirs))
        with clock.timing("publish"):
            run_stage("nomic_bert_hf.hub.publish", [
                model, "--repo_id", config.repo_id, "--output_dir", publish_dir, "--results", results_dir,
                "--data_manifest", data_manifest(corpus, root, stage_dirs), "--dry_run", "--provenance", record,
                *(["--glue_results", glue_results] if glue_results.is_file() else []),
                *(["--overwrite"] if published_before else []),  # only ever this pipeline's own earlier folder
            ])

    # 8. The results table of the published model and where this run's minutes went, printed and saved as JSON and
    #    markdown
    digest = weights_digest(model)
    runs = find_runs(results_dir, revision=digest, model_name=config.repo_id)
    rows = task_rows(runs[0], results_dir) if runs else []
    table = f"{markdown_task_table(rows)}\n\n{markdown_category_table(category_rows(rows))}\n"
    precisions = precision_scores(runs, other_settings(runs[0].experiment)) if runs else {}
    if precisions:  # retrieval on quantized embeddings
        table += f"\n{markdown_precision_table(precisions)}\n"
    minutes = f"Where this run's minutes went:\n\n{clock.markdown()}\n"
    with atomic_file(root / "results.md") as file:
        file.write(f"# {config.repo_id} ({digest})\n\n{table}\n{minutes}")
    write_json(root / "results.json", {"model": config.repo_id, "revision": digest,
                                       "compute": compute_record(DTYPES[config.dtype]), "tasks": rows,
                                       "seconds": clock.seconds})
    print(f"\n{config.repo_id} ({digest}) -> {publish_dir}\n\n{table}\n{minutes}")
    if published is not None:
        original, again = load_provenance(published).get("weights"), weights_digest(publish_dir)
        print(f"reproduction of {published}: weights {'identical' if original == again else 'DIFFERENT'} "
              f"({original} vs {again})")
    return rows


if __name__ == "__main__":
    run_command(main)
