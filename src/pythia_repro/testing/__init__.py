"""Helpers for the test suite and the benchmarks; the pipeline itself never imports this package.

- `checkpoints`: tiny suites with real DeepSpeed checkpoints, made the way the trainer makes them
  (also a subprocess script: `python -m pythia_repro.testing.checkpoints SUITE.yaml JOBS.json`).
- `fake_hub`: a loopback stand-in for the Hugging Face Hub endpoints `upload` uses.
- `neox`: the official GPT-NeoX-20B tokenizer.json, derived from a copy on PyPI when no local file exists.
"""
