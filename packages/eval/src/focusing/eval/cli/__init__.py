"""The commands of focusing-eval, one module each: `eval` (evaluate.py), `fit`, `compare`.

Registered through the `focusing_commands` hook (plugin.py); each imports its heavy parts
(torch, the geometry layer, renderers) inside the command, so that loading the registry for any
`focusing` command stays cheap.
"""
