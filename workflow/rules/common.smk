# Helpers shared by the stage rule files: paths and target lists, all derived from SUITE
# (pythia_repro.config.Suite), so rules never compute anything themselves.
from pythia_repro.config import DATA_PREFIX_NAME
from pythia_repro.workflow import publish_resolved_config

ROOT = str(SUITE.root)
# Every CLI call reads this resolved copy (defaults filled); it is rewritten only when the
# config changes, so it is a parameter of the jobs rather than an input that would retrain all.
SUITE_CONFIG = publish_resolved_config(SUITE)
CLI = "pythia-repro"


def all_targets():
    return data_targets() + train_targets() + export_targets() + evaluate_targets()
