"""The study definition: one frozen dataclass, :class:`StudyConfig`.

The *definition* fields describe the study and are stored in it (see ``bsopt.search.study``),
so every worker, the dashboard, the analysis and plain ``optuna.load_study`` users see the
same thing. The *run* fields (storage, timeout, device, ...) belong to one invocation only.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from bsopt.config.checks import validate


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a batch-size x learning-rate study, and how to run it.

    Built, every field's type and every value that needs no registry is checked (a
    ``UsageError`` names the field). Names that registries own (samplers, pruners, models,
    datasets, optimizers, lr scaling rules, devices) are checked by those registries when
    a study is planned (:func:`bsopt.search.plan_study`), before anything is stored.
    """

    # --- definition: stored in the study, identical for every worker ---
    study_name: str | None = None  # None: "<dataset>-<model>"
    sampler: str = "tpe"
    pruner: str = "batch-asha"
    n_trials: int | None = None  # total budget of complete + pruned trials; None: grid size or 20
    dataset: str = "digits"  # a catalog name, imagefolder:DIR or package.module:loader
    model: str = "cnn"  # the reference cnn or mlp, or package.module:factory
    model_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of a factory
    train: str | None = None  # package.module:function, the user's loop: called once per trial
    command: str | None = None  # the user's training script, run once per trial
    shell: bool = False  # run the command through /bin/sh (only when asked)
    image_size: int | None = None  # imagefolder: images resized to this square size
    keep_best: int = 1  # the final weights of the best K trials are kept
    precision: str = "fp32"  # fp32, or mixed precision bf16 / fp16 (CUDA)
    epochs: int = 5
    batch_size_min: int = 16
    batch_size_max: int = 256
    lr_min: float = 1e-4
    lr_max: float = 1.0
    lr_search_limit: float = 100.0  # scaling sampler: how far past --lr the search may go
    grid_lr_points: int = 5  # learning rates per batch size in the grid sampler's grid
    optimizer: str = "adam"
    momentum: float = 0.9  # SGD only
    seed: int = 0
    max_train_samples: int | None = None  # train on a subset so a trial is quick
    lr_scaling: str = "none"  # sample base_lr at reference_batch, train at base_lr*(B/B0)^k
    reference_batch: int = 64
    warmup_epochs: float = 0.0  # linear warmup from 0 to lr (Goyal et al. 2017)
    max_micro_batch: int | None = None  # larger batches run as accumulated micro-batches
    noise_scale: bool = False  # measure the gradient noise scale during training
    objectives: tuple[str, ...] = ("loss",)

    # --- run: this invocation only, never stored ---
    storage: str | None = field(default=None, compare=False)
    timeout: float | None = field(default=None, compare=False)
    data_dir: str | None = field(default=None, compare=False)
    device: str = field(default="auto", compare=False)
    workers: int = field(default=1, compare=False)
    artifact_dir: str | None = field(default=None, compare=False)
    data_mode: str = field(default="auto", compare=False)  # memory, stream or auto (by size)
    loader_workers: int = field(default=2, compare=False)  # DataLoader processes when streaming
    gpus: str | None = field(default=None, compare=False)  # "0,1": GPUs to share out (all)
    trials_per_gpu: int = field(default=1, compare=False)  # workers packed onto one GPU

    def __post_init__(self) -> None:
        validate(self, FIELD_TYPES)

    @property
    def name(self) -> str:
        """The study's name: the one given, else ``<dataset>-<model>``, ``<module>-<function>``
        of a ``--train`` function, or ``<script>-command`` of a ``--command``."""
        if self.study_name:
            return self.study_name
        if self.train is not None:
            module, _, function = self.train.partition(":")
            return f"{module.rsplit('.', 1)[-1]}-{function}"
        if self.command is not None:
            words = self.command.split()
            script = next((w for w in words if w.endswith((".py", ".sh"))), words[0] if words
                          else "script")
            return f"{PurePath(script).stem}-command"
        return f"{self.dataset}-{self.model}"

    def definition(self) -> dict[str, Any]:
        """The fields stored in the study, as JSON-ready values."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.compare}
        out["study_name"] = self.name
        out["objectives"] = list(self.objectives)
        return out

    def replace(self, **changes: Any) -> StudyConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


DEFINITION_FIELDS = tuple(f.name for f in dataclasses.fields(StudyConfig) if f.compare)
ALL_FIELDS = tuple(f.name for f in dataclasses.fields(StudyConfig))
# field -> declared type, the one statement of what each field holds (checked by validate)
FIELD_TYPES: dict[str, Any] = typing.get_type_hints(StudyConfig)
