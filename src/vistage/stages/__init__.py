"""One module per pipeline stage: a thin Typer command that loads params, calls the library and
writes the stage's outputs. Heavy imports (torch) happen inside the commands, so `vistage --help`
stays fast."""
