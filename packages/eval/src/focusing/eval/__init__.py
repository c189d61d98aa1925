"""focusing.eval: surface metrics (Chamfer, F-score, normal consistency) and `focusing eval`.

`from focusing.eval.metrics import evaluate` gives the metrics of a mesh against its ground
truth under the protocol of docs/DESIGN.md; `focusing eval PRED GT` is the command line.
"""

__version__ = "0.1.0"
