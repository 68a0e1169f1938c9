"""CLI verbs of this stage (being written)."""


def register(subparsers) -> None:
    pass
