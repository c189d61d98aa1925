"""Run the tiny focusing setup to STOP of TOTAL steps in a fresh process (used by the resume test):
python _resume_runner.py DATA RUN TOTAL STOP [--resume]."""

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

from _training_fixtures import TINY  # noqa: E402
from focusing.core.config import load_setup  # noqa: E402
from focusing.core.vae.train.trainer import Trainer  # noqa: E402

if __name__ == "__main__":
    data, run, total, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cfg = load_setup("focusing", TINY + [f"train.steps={total}", "train.warmup_steps=2",
                                         "train.deterministic=true"])
    trainer = Trainer(cfg, data, run, resume="--resume" in sys.argv, progress=False)
    trainer.fit(steps=stop)
    trainer.close()
    print(f"step {trainer.step}")
