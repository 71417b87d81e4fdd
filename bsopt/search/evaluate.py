"""``bsopt evaluate``: the best trials' kept weights scored on the test split, once.

The search never sees the test split (torchvision's test set; a fixed held-out part of the
digits and of user data, :mod:`bsopt.training.splits`), so its score is an honest estimate
of how the chosen (batch size, lr) generalizes. The scores are stored in the study (user
attribute ``bsopt_test_scores``), where ``bsopt best``, ``export`` and ``report`` show them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import optuna

from bsopt import records
from bsopt.config import config_from_definition
from bsopt.errors import UsageError
from bsopt.storage import make_storage, open_existing, resolve_url
from bsopt.storage.checkpoints import make_artifact_store
from bsopt.storage.weights import load_weights


@dataclass(frozen=True)
class TestScore:
    """One trial's score on the test split (or why it has none)."""

    trial: int
    batch_size: int | None
    lr: float | None
    val_loss: float | None
    test_loss: float | None = None
    test_accuracy: float | None = None
    test_examples: int = 0
    missing: str = ""  # why the trial could not be scored (no weights kept)


def evaluate_study(storage_url: str | None, name: str, *, top: int = 1,
                   data_dir: str | None = None, device: str = "auto",
                   artifact_dir: str | None = None) -> list[TestScore]:
    """Score the ``top`` best trials' final weights on the study's test split, and store it.

    Raises:
        UsageError: no such study, a study whose trials bsopt did not train (``--train``,
            ``--command``), no test split, or none of the trials kept its weights.
    """
    import torch

    from bsopt.training import evaluate, load_dataset, resolve_device
    from bsopt.training.models import model_factory

    if top < 1:
        raise UsageError(f"--top must be 1 or more, got {top}")
    definition = records.study_config(open_existing(storage_url, name))
    if definition is None:
        raise UsageError(f"study {name!r} has no bsopt definition: bsopt evaluate scores "
                         "studies bsopt searched")
    config = config_from_definition(definition, storage=storage_url, data_dir=data_dir,
                                    device=device, artifact_dir=artifact_dir)
    if config.train is not None or config.command is not None:
        raise UsageError(f"study {name!r} trains with your own --train function or --command: "
                         "report test metrics from it (e.g. run.report(..., test_loss=...)); "
                         "bsopt evaluate scores the networks bsopt's trainer trains")
    study = optuna.load_study(study_name=name, storage=make_storage(storage_url,
                                                                    heartbeat=False))
    best = records.best_trials(study, top)
    if not best:
        raise UsageError(f"study {name!r} has no complete trial yet: nothing to evaluate")
    torch_device = resolve_device(config.device)
    data = load_dataset(config.dataset, data_dir=config.data_dir, device=torch_device,
                        image_size=config.image_size, mode=config.data_mode,
                        loader_workers=config.loader_workers)
    if data.size("test") == 0:
        raise UsageError(f"the dataset {config.dataset!r} has no test split to evaluate on")
    build = model_factory(config.model, config.model_args)
    store = make_artifact_store(resolve_url(storage_url), artifact_dir)
    scores = []
    for trial in best:
        record = records.trial_record(trial)
        base = {"trial": trial.number, "batch_size": record.batch_size if record else None,
                "lr": record.lr if record else None,
                "val_loss": record.final_loss if record else None}
        try:
            weights = load_weights(store, trial)
        except UsageError as exc:
            scores.append(TestScore(**base, missing=str(exc)))
            continue
        torch.manual_seed(config.seed)
        model = build(data.input_shape, data.num_classes).to(torch_device)
        model.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True,
                                         map_location=torch_device))
        loss, accuracy = evaluate(model, data, "test")
        scores.append(TestScore(**base, test_loss=loss, test_accuracy=accuracy,
                                test_examples=data.size("test")))
    if all(s.missing for s in scores):
        raise UsageError(f"none of the {len(scores)} best trials kept its weights: "
                         f"{scores[0].missing}")
    stored = study.user_attrs.get(records.TEST_SCORES_ATTR) or {}
    for s in scores:
        if not s.missing:
            stored[str(s.trial)] = {records.TEST_LOSS: s.test_loss,
                                    records.TEST_ACCURACY: s.test_accuracy,
                                    records.TEST_EXAMPLES: s.test_examples}
    study.set_user_attr(records.TEST_SCORES_ATTR, stored)
    return scores
