"""focusing.eval: the commands that score and compare: `focusing eval`, `fit`, `compare`.

The scoring protocol itself (Chamfer, F-score, normal consistency; docs/DESIGN.md) is
`focusing.core.metrics.evaluate`, in core, because the trainer and the flow stages score with
it too and a sibling package may import only core; `focusing eval PRED GT` is its command line.
"""

__version__ = "0.1.0"
