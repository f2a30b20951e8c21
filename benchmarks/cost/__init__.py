"""Training cost of `FairMTLTrainer` per strategy, relative to a plain `transformers.Trainer` (issues 4 and 9).

Run from the repository root:

    python -m benchmarks.cost --quick      # tiny BERT at T = 2, 5, 17 and MiniLM at T = 5, 2 passes
    python -m benchmarks.cost              # tiny BERT at T = 2, 5, 17, 31 and G = 2, 8, 32; MiniLM at T = 2, 5, 17;
                                           # 5 passes; memory of every method; cProfile of the costly strategies

What is measured, per configuration (encoder, number of tasks T, number of groups G):

* Every method trains its own copy of one `FairMTLModel` on the same synthetic token rows (batch 16, 32 tokens,
  every task labelled, one protected attribute with G groups): the plain `transformers.Trainer` (which trains
  vanilla MTL through the model's own `loss`) and `FairMTLTrainer` with each strategy.
* All methods of a configuration run in ONE process, in interleaved passes: each pass trains every method for
  one block of `--steps` optimizer steps (a `trainer.train()` call with `max_steps`), in an order rotated
  from pass to pass, so load from other processes hits all methods alike. One warm-up pass is not recorded.
* A callback added after the trainer's own callbacks (GradNorm, teacher) times every optimizer step from
  `on_step_begin` to `on_step_end`: forward, backward, optimizer, GradNorm update and, on the last step of each
  block (the teacher runs with `teacher_interval` = block length), the teacher step. Data loading and collation
  (before `on_step_begin`, the same for every method) are left out, and so is each block's first step (a new
  optimizer allocates its state there: an artefact of calling `train()` per block).
* Per-step cost of a method, in process CPU time (primary: torch runs 1 thread, so CPU ≈ wall when idle) and
  wall time: the lower quartile of its ordinary steps over all passes + the extra of the lower quartile of its
  teacher steps ÷ `--teacher-interval` (10, the trainer's default). Load from other jobs only slows steps down,
  so a low quantile is the steadier estimate on a shared machine. Ratio = that ÷ the plain Trainer's. Also
  reported: the median and interquartile range over passes of the paired per-pass ratio (method ÷ plain
  Trainer in the same pass), which shows the noise. `vanilla` does the plain Trainer's work plus bookkeeping,
  so its distance from ×1.00 is the noise floor.
* Throughput: batch size / per-step cost.
* Peak memory: each (configuration, method) in a fresh subprocess: Linux's peak-RSS mark is reset
  (`/proc/self/clear_refs`) after the model, data and trainer are built, then `--memory-steps` steps run and
  the peak RSS (`VmHWM`) minus the RSS before training is reported: optimizer state, gradients, activations and
  whatever the strategy keeps. This is RSS, so it is an upper-level view (allocator reuse can hide growth).

Modules: [`settings`] (methods, grids, model and data building), [`timers`] (step timers), [`measure`]
(timing, memory, profile), [`render`] (Markdown and plot), [`cli`] (`main`).
"""

from .cli import main, parse_args
from .measure import measure_memory, measure_setting, memory_probe, profile_methods
from .render import plot, render_markdown, summarise
from .settings import (
    ENCODERS,
    HELDOUT_ROWS,
    METHODS,
    MINILM,
    PLAIN,
    TARGETS,
    TINY_BERT,
    Setting,
    build_model,
    make_trainer,
    synthetic_rows,
    tiny_bert_config,
)
from .timers import BlockTimer, StepTimer, lower_quartile

__all__ = [
    "ENCODERS",
    "HELDOUT_ROWS",
    "METHODS",
    "MINILM",
    "PLAIN",
    "TARGETS",
    "TINY_BERT",
    "BlockTimer",
    "Setting",
    "StepTimer",
    "build_model",
    "lower_quartile",
    "main",
    "make_trainer",
    "measure_memory",
    "measure_setting",
    "memory_probe",
    "parse_args",
    "plot",
    "profile_methods",
    "render_markdown",
    "summarise",
    "synthetic_rows",
    "tiny_bert_config",
]
