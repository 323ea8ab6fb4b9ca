"""envd: the agent inside every capsule (processes, terminals, files). Standard library only."""
