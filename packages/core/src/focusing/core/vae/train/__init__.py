"""The shape VAE's training: its step on the shared engine (trainer.py), its loss terms
(losses.py) and the memory guard of `focusing train` (memory.py)."""
