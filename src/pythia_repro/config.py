"""The suite specification: one validated config, turned into typed sections, and what derives from it.

`load_suite(path)` validates the YAML against the JSON schema (which fills every default), then
builds frozen dataclasses per section (`suite.training.train_iters`, `suite.evaluate.tasks`, ...)
so no code downstream re-defaults a key. Sizes, model names, checkpoint steps and training
segments are derived here, on those objects; every on-disk name comes from `suite.layout`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pythia_repro.data.batch_schedule import BatchSchedule
from pythia_repro.data.corpus import ReadPolicy
from pythia_repro.data.dedup.minhash import DedupParams
from pythia_repro.data.order import index_map_paths
from pythia_repro.data.synthetic import SyntheticSpec
from pythia_repro.errors import PythiaReproError
from pythia_repro.layout import Layout
from pythia_repro.models.sizes import NEOX_TOKENIZER_SIZE, SIZES, Shape

VARIANTS = ("standard", "deduped")


class ConfigError(PythiaReproError):
    """A config that does not match the schema or is inconsistent; the message names the key."""


def _schema() -> dict:
    text = resources.files("pythia_repro").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path]
    return ".".join(parts).replace(".[", "[") or "<top level>"


def _fill_defaults(schema: dict, value: Any) -> Any:
    """Copy schema defaults into a validated config so the rest of the code never guesses."""
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _fill_defaults(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in props:
                    value[key] = _fill_defaults(extra, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [_fill_defaults(schema["items"], v) for v in value]
    return value


def validate_config(raw: dict, source: str = "config") -> dict:
    """Validate against the JSON schema and return a copy with defaults filled in.

    Raises ConfigError naming the offending key (e.g. `training.train_iters`).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a mapping, got {type(raw).__name__}")
    schema = _schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        lines = [f"  {_key_path(e)}: {e.message}" for e in errors[:10]]
        raise ConfigError(f"{source}: invalid config\n" + "\n".join(lines))
    return _fill_defaults(schema, copy.deepcopy(raw))


def _section(cls, data: dict):
    """A frozen section from its (validated, defaults-filled) mapping; lists become tuples."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


# ----- sections (one per top-level key of the schema) --------------------------------------------
@dataclass(frozen=True)
class CorpusSection:
    source: str  # synthetic | files
    on_malformed: str  # error | skip
    on_empty_shard: str  # warn | error
    synthetic: SyntheticSpec
    files: tuple[str, ...] = ()
    heldout_files: tuple[str, ...] = ()

    @property
    def read_policy(self) -> ReadPolicy:
        return ReadPolicy(self.on_malformed, self.on_empty_shard)


@dataclass(frozen=True)
class TokenizerSection:
    source: str  # train | file | hub
    hub_repo: str
    vocab_size: int
    split_digits: bool  # source train: digits pre-tokenized one by one (LLaMA, PaLM)
    path: str | None = None

    @property
    def approx_size(self) -> int:
        """Entries before padding, known without the file: a trained BPE's, else GPT-NeoX-20B's."""
        return self.vocab_size if self.source == "train" else NEOX_TOKENIZER_SIZE


@dataclass(frozen=True)
class DataSection:
    variants: tuple[str, ...]
    seq_length: int
    orders: dict = field(default_factory=dict)  # published suites: {variant: {"preshuffled"|"prefix": PATH}}


@dataclass(frozen=True)
class FetchSection:
    cleanup: bool
    max_retries: int
    cache_dir: str | None = None


@dataclass(frozen=True)
class CheckpointSchedule:
    log_spaced_until: int
    every: int


@dataclass(frozen=True)
class TrainingSection:
    train_iters: int
    global_batch_size: int
    warmup_fraction: float
    weight_decay: float
    adam_beta1: float
    adam_beta2: float
    adam_eps: float
    grad_clip: float
    precision: str  # fp32 | bf16 | fp16
    zero_stage: int
    activation_checkpointing: bool
    ranks: int
    device: str  # cpu | cuda: where training jobs run (and so what they request)
    checkpoints: CheckpointSchedule
    log_every: int
    lr_schedule: str  # neox | llama | palm (train/schedule.py)
    lr_constant_steps: int  # palm schedule
    z_loss: float  # PaLM's auxiliary log^2 Z coefficient; 0 = off
    batch_ramp: tuple[dict, ...] = ()  # PaLM: smaller global batches first, {until_step, global_batch_size}
    micro_batch_size: int | None = None
    segment_steps: int | None = None
    warmup_steps: int | None = None  # else warmup_fraction x train_iters

    @property
    def on_gpu(self) -> bool:
        return self.device == "cuda"

    @cached_property
    def batch_schedule(self) -> BatchSchedule:
        """Every step's global batch size: the ramp's, then global_batch_size."""
        return BatchSchedule.from_config(self.global_batch_size, self.batch_ramp)

    @property
    def micro_batch(self) -> int:
        """Per rank; the smallest global batch split over the ranks when not given."""
        return self.micro_batch_size or self.batch_schedule.smallest // self.ranks

    @property
    def segment(self) -> int:
        return self.segment_steps or self.train_iters


@dataclass(frozen=True)
class ExportSection:
    dtype: str

    @property
    def bytes_per_parameter(self) -> int:
        return 4 if self.dtype == "float32" else 2


@dataclass(frozen=True)
class UploadSection:
    target: str  # mirror | hub | none
    namespace: str
    private: bool
    max_retries: int
    mirror_dir: str | None = None


@dataclass(frozen=True)
class EvaluateSection:
    steps: str | tuple[int, ...]  # "all" or checkpoint steps
    tasks: tuple[str, ...]
    num_fewshot: tuple[int, ...]
    batch_size: int | str
    device: str
    limit: int | None = None
    benchmark_cache: str | None = None
    gpu_memory_gb: float = 80.0  # per GPU, for jobs that load a model: resources.model_gpus

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def benchmark_cache_dir(self) -> Path:
        """Where the benchmark wheel is kept: once per machine, shared by every suite."""
        if self.benchmark_cache:
            return Path(self.benchmark_cache).expanduser()
        return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "pythia-repro"

    @property
    def benchmarks(self) -> list[str]:
        """The configured tasks that are real benchmarks with an offline copy or a stock dataset."""
        from pythia_repro.evaluate.benchmarks import BENCHMARKS, NO_OFFLINE_SOURCE

        return [t for t in self.tasks if t in BENCHMARKS or t in NO_OFFLINE_SOURCE]


@dataclass(frozen=True)
class MemorizationSection:
    steps: tuple[int, ...]  # empty: the case study is off
    k: int
    l: int  # noqa: E741 - Pythia's name for the continuation length
    slices: int
    memorized_only: bool
    batch_size: int
    device: str
    bin_size: int
    limit: int | None = None


@dataclass(frozen=True)
class TriviaQASection:
    enabled: bool
    shots: int
    limit: int | None = None


@dataclass(frozen=True)
class TermFrequencySection:
    steps: tuple[int, ...]  # empty: the case study is off
    workers: int
    time_units: bool
    ops: tuple[str, ...]
    shots: tuple[int, ...]
    x2_per_x1: int | None
    seed: int
    batch_size: int | str
    device: str
    triviaqa: TriviaQASection
    x1_values: tuple[int, ...] = tuple(range(100))

    def parts(self) -> list[tuple[int, int]]:
        """The step ranges counted by one job each: consecutive, from 0 to the last step."""
        bounds = [0, *sorted(self.steps)]
        return list(zip(bounds[:-1], bounds[1:], strict=True))


@dataclass(frozen=True)
class GenderBiasSection:
    enabled: bool
    source: str  # synthetic | real
    winobias_split: str
    seed: int
    batch_size: int | str
    device: str
    winobias_dir: str | None = None
    crows_pairs_file: str | None = None

    @property
    def source_label(self) -> str:
        return "real WinoBias + CrowS-Pairs" if self.source == "real" else "synthetic stand-in"


@dataclass(frozen=True)
class ModelSpec:
    """One model of the suite: what to build, what data it sees, where it branches from."""

    name: str
    size: str
    arch: str
    data: str  # "standard" | "deduped"
    seed: int
    shape: Shape
    base: str | None = None  # interventions: the model this one branches from
    branch_step: int | None = None
    substitution: str | None = None
    source: str = "train"  # train | hub | local (published checkpoints, fetched instead of trained)
    repo: str | None = None
    local_path: str | None = None

    @property
    def is_intervention(self) -> bool:
        return self.base is not None

    @property
    def published(self) -> bool:
        return self.source != "train"


@dataclass
class Suite:
    """A validated config, its typed sections, and the quantities every stage derives from them."""

    config: dict
    source: str = "config"
    _models: dict[str, ModelSpec] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        cfg = self.config
        corpus = dict(cfg["corpus"], synthetic=SyntheticSpec(**cfg["corpus"]["synthetic"]))
        self.corpus: CorpusSection = _section(CorpusSection, corpus)
        self.tokenizer: TokenizerSection = _section(TokenizerSection, cfg["tokenizer"])
        self.dedup: DedupParams = DedupParams(**cfg["dedup"])
        self.data: DataSection = _section(DataSection, cfg["data"])
        training = dict(cfg["training"], checkpoints=_section(CheckpointSchedule, cfg["training"]["checkpoints"]))
        self.training: TrainingSection = _section(TrainingSection, training)
        self.export: ExportSection = _section(ExportSection, cfg["export"])
        self.fetch: FetchSection = _section(FetchSection, cfg["fetch"])
        self.upload: UploadSection = _section(UploadSection, cfg["upload"])
        self.evaluate: EvaluateSection = _section(EvaluateSection, cfg["evaluate"])
        self.memorization: MemorizationSection = _section(MemorizationSection, cfg["analysis"]["memorization"])
        term_frequency = cfg["analysis"]["term_frequency"]
        term_frequency = dict(term_frequency, triviaqa=_section(TriviaQASection, term_frequency["triviaqa"]))
        self.term_frequency: TermFrequencySection = _section(TermFrequencySection, term_frequency)
        self.gender_bias: GenderBiasSection = _section(GenderBiasSection, cfg["analysis"]["gender_bias"])
        self.layout = Layout(Path(cfg["results_dir"]) / cfg["suite"])
        self._check_sources()
        self._check_training()
        self._models = {m.name: m for m in self._build_models()}
        self._check_steps()
        self._check_published()

    def _check_training(self) -> None:
        """What a training job would otherwise find only after the whole data stage has run."""
        t = self.training
        try:
            schedule = t.batch_schedule
        except PythiaReproError as exc:
            raise ConfigError(f"{self.source}: training.{exc}") from None
        # Every step's batch must be whole micro-batches on every rank (the ramp's sizes too).
        sizes = {f"training.batch_ramp[{i}].global_batch_size": size for i, (_, size) in enumerate(schedule.ramp)}
        sizes["training.global_batch_size"] = t.global_batch_size
        for i, (until, _) in enumerate(schedule.ramp):
            if until > t.train_iters:
                raise ConfigError(f"{self.source}: training.batch_ramp[{i}].until_step: {until} is past "
                                  f"training.train_iters {t.train_iters}")
        if t.micro_batch_size is None:
            key = min(sizes, key=sizes.get)  # the micro-batch is the smallest batch over the ranks
            if sizes[key] % t.ranks:
                raise ConfigError(f"{self.source}: {key}: {sizes[key]} does not split evenly over training.ranks "
                                  f"{t.ranks}; set training.micro_batch_size or change either")
        for key, size in sizes.items():
            if size % (t.micro_batch * t.ranks):
                raise ConfigError(f"{self.source}: training.micro_batch_size: {t.micro_batch} per rank x {t.ranks} "
                                  f"ranks does not divide {key} {size}")
        if t.segment_steps is not None and t.segment_steps > t.train_iters:
            raise ConfigError(f"{self.source}: training.segment_steps: {t.segment_steps} is longer than "
                              f"training.train_iters {t.train_iters}; leave it out for one segment")
        if self.memorization.steps and self.memorization.k + self.memorization.l > self.seq_length + 1:
            raise ConfigError(f"{self.source}: analysis.memorization: k + l = "
                              f"{self.memorization.k + self.memorization.l} exceeds a training sample "
                              f"(data.seq_length + 1 = {self.seq_length + 1} tokens)")

    def _check_steps(self) -> None:
        """Every configured step list names checkpoints that training writes."""
        lists = {"analysis.memorization.steps": self.memorization.steps,
                 "analysis.term_frequency.steps": self.term_frequency.steps}
        if self.evaluate.steps != "all":
            lists["evaluate.steps"] = self.evaluate.steps
        for key, steps in lists.items():
            missing = sorted(set(steps) - set(self.checkpoint_steps))
            if missing:
                raise ConfigError(f"{self.source}: {key}: {missing} are not checkpoint steps "
                                  f"(training.checkpoints gives {self.checkpoint_steps[:8]}...)")

    def _check_sources(self) -> None:
        """Keys the schema cannot require on their own: they depend on another key's value."""
        if self.corpus.source == "files" and not self.corpus.files:
            raise ConfigError(f"{self.source}: corpus.files: required when corpus.source is files")
        if self.tokenizer.source == "file" and not self.tokenizer.path:
            raise ConfigError(f"{self.source}: tokenizer.path: required when tokenizer.source is file")

    def _check_published(self) -> None:
        """Published models name where their revisions are, and the data orders they saw exist."""
        for spec in self.models:
            if spec.source == "hub" and not spec.repo:
                raise ConfigError(f"{self.source}: models: {spec.name} has source hub but no repo")
            if spec.source == "local" and not spec.local_path:
                raise ConfigError(f"{self.source}: models: {spec.name} has source local but no path")
            if spec.published and spec.data not in self.data.orders and self.needs_order(spec):
                raise ConfigError(f"{self.source}: data.orders.{spec.data}: required: {spec.name} is published and "
                                  "its training order is analysed (preshuffled: PREFIX or prefix: PREFIX)")
        trained = [m.name for m in self.models if not m.published]
        if trained and self.corpus.source == "none":
            raise ConfigError(f"{self.source}: corpus.source is none, but {trained} are to be trained")

    def needs_order(self, spec: ModelSpec) -> bool:
        """Whether a case study reads the training order this model saw."""
        return bool(self.memorization_steps(spec.name) or self.term_frequency_steps(spec.name))

    # ----- published suites ------------------------------------------------------------------
    @property
    def trained_models(self) -> list[ModelSpec]:
        return [m for m in self.models if not m.published]

    @property
    def published_models(self) -> list[ModelSpec]:
        return [m for m in self.models if m.published]

    def order_files(self, variant: str, seed: int) -> list[Path]:
        """What a data order is read from: our token files and index maps, or, for a published
        suite, the configured pre-shuffled file (or token files with their index maps)."""
        given = self.data.orders.get(variant)
        if given is None:
            return self.index_maps(variant, seed) + self.layout.token_files(self.layout.data_prefix(variant))
        if "preshuffled" in given:
            return self.layout.token_files(Path(given["preshuffled"]))
        prefix = Path(given["prefix"])
        maps = index_map_paths(prefix, self.num_samples, self.seq_length, seed)
        return list(maps.values()) + self.layout.token_files(prefix)

    @property
    def tokenizer_file(self) -> Path:
        """The tokenizer.json the case studies decode with: the data stage's, or, for a suite
        that trains nothing, the configured file."""
        if not self.trained_models and self.tokenizer.source == "file":
            return Path(self.tokenizer.path)
        return self.layout.tokenizer

    @property
    def hub_cache(self) -> Path:
        return Path(self.fetch.cache_dir) if self.fetch.cache_dir else self.layout.default_hub_cache

    # ----- identity ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config["suite"]

    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def variants(self) -> list[str]:
        return list(self.data.variants)

    @property
    def seeds(self) -> list[int]:
        """Seeds of the suite's models: one data order per (variant, seed)."""
        return sorted({m.seed for m in self.models})

    # ----- training schedule ---------------------------------------------------------------
    @property
    def train_iters(self) -> int:
        return self.training.train_iters

    @property
    def global_batch_size(self) -> int:
        """The batch after any ramp (every step's without one); per step: `batch_schedule`."""
        return self.training.global_batch_size

    @property
    def batch_schedule(self) -> BatchSchedule:
        return self.training.batch_schedule

    @property
    def seq_length(self) -> int:
        return self.data.seq_length

    @property
    def num_samples(self) -> int:
        """Samples GPT-NeoX asks the index maps for: 0.5% more than training consumes."""
        return self.batch_schedule.num_samples(self.train_iters)

    def index_maps(self, variant: str, seed: int | str) -> list[Path]:
        """The doc, sample and shuffle index maps of one data order."""
        return self.layout.index_maps(variant, self.num_samples, self.seq_length, seed)

    def tokens_seen(self, step: int) -> int:
        return self.batch_schedule.samples_before(step) * self.seq_length

    @cached_property
    def checkpoint_steps(self) -> list[int]:
        """Step 0, powers of two up to `log_spaced_until`, then every `every` steps, and the end.

        Pythia: 0, 1, 2, 4, ..., 512, 1000, 2000, ..., 143000 (154 checkpoints).
        """
        schedule = self.training.checkpoints
        steps = {0, self.train_iters}
        power = 1
        while power <= min(schedule.log_spaced_until, self.train_iters):
            steps.add(power)
            power *= 2
        steps.update(range(schedule.every, self.train_iters + 1, schedule.every))
        return sorted(steps)

    def segment_ends(self, model: str) -> list[int]:
        """Steps at which the model's training jobs stop; the last is train_iters."""
        spec = self.model(model)
        start = spec.branch_step or 0
        seg = self.training.segment
        ends = list(range(start + seg, self.train_iters, seg)) + [self.train_iters]
        return [e for e in ends if e > start]

    def model_checkpoint_steps(self, model: str) -> list[int]:
        """Checkpoints this model's own training writes (interventions start after their branch)."""
        spec = self.model(model)
        if spec.branch_step is None:
            return self.checkpoint_steps
        return [s for s in self.checkpoint_steps if s > spec.branch_step]

    def final_step(self, model: str) -> int:
        return max(self.model_checkpoint_steps(model))

    def segment_for_step(self, model: str, step: int) -> int:
        """The segment end whose job writes checkpoint `step` of `model`."""
        for end in self.segment_ends(model):
            if step <= end:
                return end
        raise ConfigError(f"step {step} is beyond training of {model} ({self.train_iters} steps)")

    # ----- models --------------------------------------------------------------------------
    @property
    def models(self) -> list[ModelSpec]:
        return list(self._models.values())

    def model(self, name: str) -> ModelSpec:
        try:
            return self._models[name]
        except KeyError:
            raise ConfigError(f"{self.source}: no model named {name!r}; known: {sorted(self._models)}") from None

    def size_shape(self, size: str) -> Shape:
        table = {**SIZES, **{k: Shape(**v) for k, v in self.config["sizes"].items()}}
        if size not in table:
            raise ConfigError(f"{self.source}: models: unknown size {size!r}; known: {sorted(table)}")
        shape = table[size]
        # an explicit head_dim (llama/palm) frees d_model from being heads x head width
        if shape.d_model % shape.heads and not self.config["sizes"].get(size, {}).get("head_dim"):
            raise ConfigError(f"{self.source}: sizes.{size}: d_model must be divisible by heads (or set head_dim)")
        return shape

    def approx_parameters(self, model: str) -> int:
        """A model's parameter count as the rules' memory requests need it, without torch (see
        Shape.approx_parameters); a tokenizer file or Hub tokenizer is taken to be GPT-NeoX-20B's size."""
        spec = self.model(model)
        return spec.shape.approx_parameters(self.tokenizer.approx_size, spec.arch)

    def _build_models(self) -> list[ModelSpec]:
        prefix = self.config["name_prefix"]
        specs: list[ModelSpec] = []
        for entry in self.config["models"]:
            shape = self.size_shape(entry["size"])
            arch = entry["arch"]
            # The arch joins the name unless the size already says it (llama-7b, palm-8b).
            arch_tag = "" if arch == "gpt-neox" or entry["size"].startswith(f"{arch}-") else f"-{arch}"
            for variant in entry["data"]:
                if variant not in self.variants:
                    raise ConfigError(
                        f"{self.source}: models: size {entry['size']} wants data {variant!r}, "
                        f"but data.variants is {self.variants}"
                    )
                for seed in entry.get("seeds", [self.seed]):
                    name = f"{prefix}-{entry['size']}{arch_tag}" + ("-deduped" if variant == "deduped" else "")
                    if seed != self.seed:
                        name += f"-seed{seed}"
                    specs.append(ModelSpec(name, entry["size"], arch, variant, seed, shape, source=entry["source"],
                                           repo=entry.get("repo"), local_path=entry.get("path")))
        names = [s.name for s in specs]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ConfigError(f"{self.source}: models: duplicate model names {sorted(dupes)}")
        by_name = {s.name: s for s in specs}
        for iv in self.config["interventions"]:
            base = by_name.get(iv["base"])
            if base is None:
                raise ConfigError(
                    f"{self.source}: interventions[{iv['name']}].base: no model {iv['base']!r}; "
                    f"known: {sorted(by_name)}"
                )
            target = round(self.train_iters * (1 - iv["branch_fraction"]))
            branch = max(s for s in self.checkpoint_steps if s <= target)
            if branch >= self.train_iters:
                raise ConfigError(f"{self.source}: interventions[{iv['name']}]: branch step is the last step")
            specs.append(
                dataclasses.replace(base, name=f"{base.name}-{iv['name']}", base=base.name, branch_step=branch,
                                    substitution=iv["substitution"], source=iv["source"], repo=iv.get("repo"),
                                    local_path=iv.get("path"))
            )
        return specs

    # ----- evaluation -------------------------------------------------------------------------
    def eval_steps(self, model: str) -> list[int]:
        """Checkpoints to evaluate: all of the model's, or the configured subset that exists."""
        steps = self.evaluate.steps
        own = self.model_checkpoint_steps(model)
        if steps == "all":
            return own
        return [s for s in own if s in set(steps)]

    def export_steps(self, model: str) -> list[int]:
        """Checkpoints to export and publish: those evaluated or analysed, plus the final one."""
        analysed = set(self.memorization_steps(model)) | set(self.term_frequency_steps(model))
        analysed |= set(self.gender_bias_steps(model))
        return sorted(set(self.eval_steps(model)) | analysed | {self.final_step(model)})

    # ----- case studies -------------------------------------------------------------------------
    def memorization_steps(self, model: str) -> list[int]:
        """The configured memorization checkpoints this model writes."""
        own = set(self.model_checkpoint_steps(model))
        return [s for s in sorted(self.memorization.steps) if s in own]

    def gender_bias_steps(self, model: str) -> list[int]:
        """Where a model's bias is measured: an intervention at its own checkpoints, its base at the
        checkpoints of the intervention window (from the branch step on), nothing for the others."""
        if not self.gender_bias.enabled:
            return []
        spec = self.model(model)
        if spec.is_intervention:
            return self.model_checkpoint_steps(model)
        branches = [m.branch_step for m in self.models if m.base == model]
        if not branches:
            return []
        return [s for s in self.checkpoint_steps if s >= min(branches)]

    @property
    def term_frequency_models(self) -> list[ModelSpec]:
        """Models whose arithmetic accuracy is related to term counts: the suite's own training runs
        (an intervention sees its base model's data, changed; it is left out)."""
        return [m for m in self.models if not m.is_intervention] if self.term_frequency.steps else []

    def term_frequency_steps(self, model: str) -> list[int]:
        if self.model(model) not in self.term_frequency_models:
            return []
        return sorted(self.term_frequency.steps)

    @property
    def triviaqa_models(self) -> list[ModelSpec]:
        """Models whose TriviaQA accuracy is related to entity co-occurrence (term_frequency.triviaqa)."""
        return self.term_frequency_models if self.term_frequency.triviaqa.enabled else []

    def data_order_name(self, variant: str, seed: int) -> str:
        """A data order's name in the analysis outputs: the variant, plus the seed when not the suite's."""
        return variant if seed == self.seed else f"{variant}-seed{seed}"

    @property
    def term_count_orders(self) -> dict[str, tuple[str, int]]:
        """{data order name: (variant, seed)} of every order the term-frequency models trained on."""
        return {self.data_order_name(m.data, m.seed): (m.data, m.seed) for m in self.term_frequency_models}


def load_suite(config: str | Path | dict, source: str = "config") -> Suite:
    """Load (from a YAML path or an already-parsed mapping) and validate a suite config.

    `source` names a mapping's origin in error messages (the Snakefile passes its config files).
    """
    if isinstance(config, (str, Path)):
        path = Path(config)
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        source = str(path)
    else:
        raw = config
    return Suite(validate_config(raw, source), source)
