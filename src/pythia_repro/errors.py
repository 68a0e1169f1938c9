"""The project's own error type: a problem with the user's input or files, said in one line.

The CLI prints these as `pythia-repro VERB: error: MESSAGE` (the message names the file or key);
anything else is a bug or an environment failure and keeps its traceback. It subclasses
ValueError so callers that validate input keep catching it as one.
"""


class PythiaReproError(ValueError):
    """Bad input: a config key, a file, an argument; the message says which and why."""
