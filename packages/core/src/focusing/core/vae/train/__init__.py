"""The shape VAE's training: its step on the shared engine, its loss terms, its memory guard.

trainer.py: VAEStep and Trainer (the engine running the step); losses.py: the terms of eq. 7
(LOSS_TERMS); memory.py: the memory guard of `focusing train`.
"""
