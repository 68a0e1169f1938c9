"""The paper's figures and the report: every figure of the Pythia paper the suite has data for."""
