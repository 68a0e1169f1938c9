# Training stage (being written): one job per segment of each model.


def train_targets():
    return []
