"""The suite specification: one validated config, and everything derived from it.

Sizes, model names, checkpoint steps, training segments and output paths are computed here
and only here, so the Snakefile, the CLI verbs and the tests agree on them by construction.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pythia_repro.models.sizes import NEOX_TOKENIZER_SIZE, SIZES, padded_vocab_size

VARIANTS = ("standard", "deduped")
# GPT-NeoX names the token files after the Pile's single text field; keeping it makes our
# index maps land under the exact file names GPT-NeoX would look for.
DATA_PREFIX_NAME = "pile_text_document"


class ConfigError(ValueError):
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


@dataclass(frozen=True)
class ModelSpec:
    """One model of the suite: what to build, what data it sees, where it branches from."""

    name: str
    size: str
    arch: str
    data: str  # "standard" | "deduped"
    seed: int
    shape: dict  # layers, d_model, heads, ffn, lr, min_lr, init, model_parallel
    base: str | None = None  # interventions: the model this one branches from
    branch_step: int | None = None
    substitution: str | None = None

    @property
    def is_intervention(self) -> bool:
        return self.base is not None


@dataclass
class Suite:
    """A validated config plus the quantities every stage derives from it."""

    config: dict
    source: str = "config"
    _models: dict[str, ModelSpec] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._check_sources()
        self._models = {m.name: m for m in self._build_models()}

    def _check_sources(self) -> None:
        """Keys the schema cannot require on their own: they depend on another key's value."""
        corpus, tokenizer = self.config["corpus"], self.config["tokenizer"]
        if corpus["source"] == "files" and not corpus.get("files"):
            raise ConfigError(f"{self.source}: corpus.files: required when corpus.source is files")
        if tokenizer["source"] == "file" and not tokenizer.get("path"):
            raise ConfigError(f"{self.source}: tokenizer.path: required when tokenizer.source is file")

    # ----- identity and paths ---------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config["suite"]

    @property
    def root(self) -> Path:
        return Path(self.config["results_dir"]) / self.name

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def variants(self) -> list[str]:
        return list(self.config["data"]["variants"])

    def data_dir(self, variant: str | None = None) -> Path:
        return self.root / "data" / variant if variant else self.root / "data"

    def data_prefix(self, variant: str) -> Path:
        """GPT-NeoX data prefix: PREFIX.bin/.idx and PREFIX_train_0_indexmap_*.npy."""
        return self.data_dir(variant) / DATA_PREFIX_NAME

    @property
    def tokenizer_path(self) -> Path:
        return self.data_dir() / "tokenizer" / "tokenizer.json"

    def model_dir(self, model: str) -> Path:
        return self.root / "models" / model

    # ----- training schedule --------------------------------------------------------------
    @property
    def training(self) -> dict:
        return self.config["training"]

    @property
    def train_iters(self) -> int:
        return self.training["train_iters"]

    @property
    def global_batch_size(self) -> int:
        return self.training["global_batch_size"]

    @property
    def seq_length(self) -> int:
        return self.config["data"]["seq_length"]

    @property
    def num_samples(self) -> int:
        """GPT-NeoX asks the index map for 0.5% more samples than training consumes."""
        return math.ceil(self.train_iters * self.global_batch_size * 1.005)

    @cached_property
    def checkpoint_steps(self) -> list[int]:
        """Step 0, powers of two up to `log_spaced_until`, then every `every` steps, and the end.

        Pythia: 0, 1, 2, 4, ..., 512, 1000, 2000, ..., 143000 (154 checkpoints).
        """
        spec = self.training.get("checkpoints", {})
        until, every = spec.get("log_spaced_until", 512), spec.get("every", 1000)
        steps = {0, self.train_iters}
        power = 1
        while power <= min(until, self.train_iters):
            steps.add(power)
            power *= 2
        steps.update(range(every, self.train_iters + 1, every))
        return sorted(steps)

    def segment_ends(self, model: str) -> list[int]:
        """Steps at which the model's training jobs stop; the last is train_iters."""
        spec = self.model(model)
        start = spec.branch_step or 0
        seg = self.training.get("segment_steps") or self.train_iters
        ends = list(range(start + seg, self.train_iters, seg)) + [self.train_iters]
        return [e for e in ends if e > start]

    def model_checkpoint_steps(self, model: str) -> list[int]:
        """Checkpoints this model's own training writes (interventions start after their branch)."""
        spec = self.model(model)
        if spec.branch_step is None:
            return self.checkpoint_steps
        return [s for s in self.checkpoint_steps if s > spec.branch_step]

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

    def size_shape(self, size: str) -> dict:
        table = {**SIZES, **self.config.get("sizes", {})}
        if size not in table:
            raise ConfigError(f"{self.source}: models: unknown size {size!r}; known: {sorted(table)}")
        shape = dict(table[size])
        shape.setdefault("init", "small")
        shape.setdefault("model_parallel", 1)
        if shape["d_model"] % shape["heads"]:
            raise ConfigError(f"{self.source}: sizes.{size}: d_model must be divisible by heads")
        return shape

    def vocab_size(self, size: str, tokenizer_size: int = NEOX_TOKENIZER_SIZE) -> int:
        return padded_vocab_size(tokenizer_size, self.size_shape(size)["model_parallel"])

    def approx_parameters(self, model: str) -> int:
        """A model's parameter count as the rules' memory requests need it, without torch: a
        GPT-NeoX-shaped count (untied embeddings, 12d² + 13d per layer) of the padded vocabulary;
        a tokenizer file or Hub tokenizer is taken to be GPT-NeoX-20B's size."""
        spec = self.model(model)
        d, layers = spec.shape["d_model"], spec.shape["layers"]
        tokenizer = self.config["tokenizer"]
        tokenizer_size = tokenizer["vocab_size"] if tokenizer["source"] == "train" else NEOX_TOKENIZER_SIZE
        vocab = self.vocab_size(spec.size, tokenizer_size)
        return 2 * vocab * d + layers * (12 * d * d + 13 * d)

    def _build_models(self) -> list[ModelSpec]:
        prefix = self.config["name_prefix"]
        specs: list[ModelSpec] = []
        for entry in self.config["models"]:
            shape = self.size_shape(entry["size"])
            arch = entry["arch"]
            arch_tag = "" if arch == "gpt-neox" else f"-{arch}"
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
                    specs.append(ModelSpec(name, entry["size"], arch, variant, seed, shape))
        names = [s.name for s in specs]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ConfigError(f"{self.source}: models: duplicate model names {sorted(dupes)}")
        by_name = {s.name: s for s in specs}
        for iv in self.config.get("interventions", []):
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
                ModelSpec(
                    name=f"{base.name}-{iv['name']}",
                    size=base.size,
                    arch=base.arch,
                    data=base.data,
                    seed=base.seed,
                    shape=base.shape,
                    base=base.name,
                    branch_step=branch,
                    substitution=iv["substitution"],
                )
            )
        return specs

    # ----- evaluation -------------------------------------------------------------------------
    def eval_steps(self, model: str) -> list[int]:
        """Checkpoints to evaluate: all of the model's, or the configured subset that exists."""
        steps = self.config.get("evaluate", {}).get("steps", "all")
        own = self.model_checkpoint_steps(model)
        if steps == "all":
            return own
        missing = sorted(set(steps) - set(self.checkpoint_steps))
        if missing:
            raise ConfigError(f"{self.source}: evaluate.steps: {missing} are not checkpoint steps")
        return [s for s in own if s in set(steps)]


def load_suite(config: str | Path | dict) -> Suite:
    """Load (from a YAML path or an already-parsed mapping) and validate a suite config."""
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
        raw, source = config, "config"
    return Suite(validate_config(raw, source), source)
