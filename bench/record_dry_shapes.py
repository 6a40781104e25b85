"""pytest plugin of the record's dry run (`-p bench.record_dry_shapes`): the bench files' shape
tables, bench/shapes.py, shrunk in place to the dry plan's tiny sizes under the same keys, so
the bench files run their own code (and `-k` picks the same case names) in seconds on a CPU.
Plugins given with -p load before the bench files are collected, which is when they read the
tables."""
from bench.record_plan import dry_plan
from bench.shapes import PROPAGATION_SHAPES, TRAINING_SHAPES


def _shrink(table: dict, tiny_shapes: list[dict], keep: tuple[str, ...] = ()) -> None:
    """Each entry becomes a tiny shape; the fields in `keep` (what files select cases by) stay."""
    for index, (name, shape) in enumerate(list(table.items())):
        table[name] = dict(tiny_shapes[index % len(tiny_shapes)], **{key: shape[key] for key in keep})


_plan = dry_plan()
_shrink(PROPAGATION_SHAPES, list(_plan.propagation_shapes.values()))
_shrink(TRAINING_SHAPES, list(_plan.kernel_shapes.values()), keep=("preset",))  # bench_train_step.py picks by preset
