"""The `smae` sub-commands, one module per command named after it (`smae.cli` lists them).

Each defines `add_arguments(parser)` and `run(args) -> int` and leaves the work to the modules of
the subpackage it drives; heavy imports (torch, numpy) wait inside `run`, so `smae --help` is fast.
"""
