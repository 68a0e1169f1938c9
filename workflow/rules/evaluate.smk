# Evaluation stage (being written).


def evaluate_targets():
    return []
