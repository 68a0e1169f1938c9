"""The suite config: schema validation with clear messages, and the quantities derived from it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pythia_repro.config import ConfigError, load_suite

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def with_change(path: str, value) -> dict:
    cfg = copy.deepcopy(DEFAULT)
    *parents, leaf = path.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    node[leaf] = value
    return cfg


def test_both_shipped_configs_validate() -> None:
    assert load_suite(REPO / "config" / "config.yaml").name == "mini"
    assert load_suite(REPO / "config" / "pythia.yaml").name == "pythia"


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"training: .*'train_itres' was unexpected"):
        load_suite(with_change("training.train_itres", 10))


def test_bad_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"dedup.threshold: 1.5 is greater than the maximum of 1"):
        load_suite(with_change("dedup.threshold", 1.5))
    with pytest.raises(ConfigError, match=r"models\[0\].arch: 'gpt-5' is not one of"):
        cfg = copy.deepcopy(DEFAULT)
        cfg["models"][0]["arch"] = "gpt-5"
        load_suite(cfg)


def test_unknown_size_and_missing_base_are_named() -> None:
    cfg = copy.deepcopy(DEFAULT)
    cfg["models"][0]["size"] = "3m"
    with pytest.raises(ConfigError, match="unknown size '3m'"):
        load_suite(cfg)
    cfg = copy.deepcopy(DEFAULT)
    cfg["interventions"][0]["base"] = "pythia-nope"
    with pytest.raises(ConfigError, match=r"interventions\[genderswap\].base: no model 'pythia-nope'"):
        load_suite(cfg)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_suite(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("suite: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{bad}: not valid YAML"):
        load_suite(bad)


def test_pythia_schedule() -> None:
    suite = load_suite(REPO / "config" / "pythia.yaml")
    steps = suite.checkpoint_steps
    # 154 checkpoints: 0, 1, 2, 4, ..., 512 (11 values), then 1000, 2000, ..., 143000 (143 values).
    assert len(steps) == 154
    assert steps[:11] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert steps[11:14] == [1000, 2000, 3000] and steps[-1] == 143000
    assert suite.num_samples == 147_164_160  # ceil(143000 * 1024 * 1.005)
    names = [m.name for m in suite.models]
    # 16 models and the paper's 5 interventions (70m, 410m, 1.4b twice, 6.9b).
    assert "pythia-70m" in names and "pythia-12b-deduped" in names and len(names) == 21
    assert suite.model("pythia-12b").shape.init == "normal"
    assert suite.segment_ends("pythia-70m")[:2] == [5000, 10000] and suite.segment_ends("pythia-70m")[-1] == 143000


def test_intervention_branches_at_a_checkpoint_before_the_end() -> None:
    cfg = yaml.safe_load((REPO / "config" / "pythia.yaml").read_text())
    # The shipped config branches at Pythia's own steps (fractions 10k/143k and 30k/143k).
    shipped = load_suite(copy.deepcopy(cfg))
    assert shipped.model("pythia-70m-deduped-genderswap").branch_step == 133000
    assert shipped.model("pythia-1.4b-deduped-genderswap21").branch_step == 113000
    cfg["interventions"][0]["branch_fraction"] = 0.07
    suite = load_suite(cfg)
    iv = suite.model("pythia-70m-deduped-genderswap")
    # 7% before the end of 143000 steps is step 132990; the checkpoint at or before it is 132000.
    assert (iv.base, iv.branch_step, iv.data) == ("pythia-70m-deduped", 132000, "deduped")
    assert suite.model_checkpoint_steps(iv.name)[0] == 133000
    assert suite.segment_ends(iv.name) == [137000, 142000, 143000]


def test_defaults_are_filled() -> None:
    suite = load_suite(DEFAULT)
    assert suite.training.adam_beta2 == 0.95 and suite.training.grad_clip == 1.0
    assert suite.config["upload"]["target"] == "mirror"
    assert suite.root == Path("results") / "mini"


def test_minimal_config_gets_every_section_default() -> None:
    suite = load_suite(
        {
            "suite": "t",
            "corpus": {"source": "synthetic"},
            "tokenizer": {"source": "train"},
            "data": {"seq_length": 32},
            "training": {"train_iters": 4, "global_batch_size": 2},
            "models": [{"size": "nano"}],
        }
    )
    assert suite.config["corpus"]["synthetic"]["num_shards"] == 2
    assert suite.config["dedup"]["threshold"] == 0.87
    assert suite.config["evaluate"]["steps"] == "all" and suite.config["upload"]["target"] == "mirror"
    assert suite.checkpoint_steps == [0, 1, 2, 4]


def test_source_dependent_keys_are_required() -> None:
    cfg = copy.deepcopy(DEFAULT)
    cfg["corpus"] = {"source": "files"}
    with pytest.raises(ConfigError, match="corpus.files: required when corpus.source is files"):
        load_suite(cfg)
    cfg = copy.deepcopy(DEFAULT)
    cfg["tokenizer"] = {"source": "file"}
    with pytest.raises(ConfigError, match="tokenizer.path: required when tokenizer.source is file"):
        load_suite(cfg)


def test_approx_parameters_tracks_the_real_count() -> None:
    """The rules' memory requests use a torch-free count; it must stay near the models' real size."""
    suite = load_suite(REPO / "config" / "pythia.yaml")
    published = {"pythia-70m": 70_426_624, "pythia-1b": 1_011_781_632, "pythia-12b": 11_846_072_320}
    for model, count in published.items():
        assert abs(suite.approx_parameters(model) - count) / count < 0.01, model
    default = load_suite(REPO / "config" / "config.yaml")
    # A trained BPE's vocabulary, not GPT-NeoX-20B's, sizes the default suite's embeddings.
    spec = default.models[0]
    d, layers = spec.shape.d_model, spec.shape.layers
    embeddings = 2 * spec.shape.padded_vocab(default.tokenizer.vocab_size) * d
    assert embeddings < default.approx_parameters(spec.name) < embeddings + 13 * d * d * layers


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("training.micro_batch_size", 3, r"training.micro_batch_size: 3 per rank x 1 ranks does not divide "
                                         r"training.global_batch_size 16"),
        ("training.segment_steps", 300, r"training.segment_steps: 300 is longer than training.train_iters 256"),
        ("evaluate.steps", [0, 100], r"evaluate.steps: \[100\] are not checkpoint steps"),
        ("analysis.memorization.steps", [256, 255], r"analysis.memorization.steps: \[255\] are not checkpoint"),
        ("analysis.memorization.l", 120, r"analysis.memorization: k \+ l = 152 exceeds a training sample"),
    ],
)
def test_late_constraints_fail_at_load_naming_key_and_file(tmp_path: Path, key, value, message) -> None:
    """What a training or analysis job would find after the data stage is caught when the suite loads."""
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(with_change(key, value)))
    with pytest.raises(ConfigError, match=f"^{path}: {message}"):
        load_suite(path)


def test_ranks_must_split_the_global_batch() -> None:
    cfg = with_change("training.ranks", 3)
    del cfg["training"]["micro_batch_size"]
    with pytest.raises(ConfigError, match=r"^config: training.global_batch_size: 16 does not split evenly over "
                                          r"training.ranks 3"):
        load_suite(cfg)


def test_custom_size_takes_the_llama_and_palm_fields() -> None:
    """A suite's own `sizes:` row may set what PaLM-style shapes need: head_dim (here heads x
    head_dim != d_model), swiglu_ffn and PaLM's init; the model is built with them."""
    from pythia_repro.models.build import build_model

    cfg = copy.deepcopy(DEFAULT)
    cfg["sizes"] = {"palm-mini": {"layers": 1, "d_model": 64, "heads": 3, "ffn": 256, "lr": 1e-2,
                                  "min_lr": 1e-3, "init": "palm", "head_dim": 24, "swiglu_ffn": 160}}
    cfg["models"] = [{"size": "palm-mini", "arch": "palm", "data": ["standard"]}]
    cfg["interventions"] = []
    shape = load_suite(cfg).size_shape("palm-mini")
    assert (shape.head_dim, shape.swiglu_ffn, shape.init) == (24, 160, "palm")
    model = build_model("palm", shape, vocab_size=128, seq_length=16, seed=0)
    layer = model.model.layers[0]
    assert layer.self_attn.q_proj.weight.shape == (3 * 24, 64)
    assert layer.mlp.gate_proj.weight.shape == (160, 64)

    del cfg["sizes"]["palm-mini"]["head_dim"]
    with pytest.raises(ConfigError, match=r"sizes.palm-mini: d_model must be divisible by heads \(or set head_dim\)"):
        load_suite(cfg).size_shape("palm-mini")
