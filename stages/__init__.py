"""The six pipeline stages, one Typer command per file: prepare, split, train, predict, evaluate,
report. Each file runs on its own (`python stages/train.py --help`); dvc.yaml calls them with every
path they read and write, and `vistage` gathers them as sub-commands. They load params, call the
library (src/vistage) and write outputs; heavy imports happen inside the commands."""
