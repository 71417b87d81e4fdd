"""The training loop: it learns, accumulates exactly, resumes exactly, and notices divergence."""

from __future__ import annotations

import io

import pytest
import torch

from bsopt.training.data import load_dataset
from bsopt.training.models import ReferenceCNN, ReferenceMLP, build_model
from bsopt.training.trainer import Diverged, Trainer, TrainSettings


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", max_train_samples=512)


def trainer(data, name: str = "mlp", **settings) -> Trainer:
    torch.manual_seed(0)
    model = build_model(name, data.input_shape, data.num_classes)
    return Trainer(model, data, TrainSettings(**{"batch_size": 32, "lr": 1e-3, "epochs": 3,
                                                  **settings}))


def test_the_reference_networks_have_the_articles_layers() -> None:
    cnn = ReferenceCNN((1, 28, 28), 10)
    convs = [m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in cnn.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [32, 64]
    assert [(f.in_features, f.out_features) for f in linears] == [(64 * 12 * 12, 128), (128, 10)]
    mlp = ReferenceMLP((1, 28, 28), 10)
    assert [(f.in_features, f.out_features) for f in mlp.modules()
            if isinstance(f, torch.nn.Linear)] == [(784, 256), (256, 128), (128, 10)]
    assert ReferenceCNN((3, 32, 32), 10)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_training_lowers_the_validation_loss_and_records_metrics(digits) -> None:
    t = trainer(digits, "cnn")
    results = [t.run_epoch() for _ in range(3)]
    assert results[-1].val_loss < results[0].val_loss < 2.3
    assert results[-1].val_accuracy > 0.7
    assert [r.steps for r in results] == [16, 32, 48]  # 512 / 32 steps per epoch
    assert all(r.samples_per_second > 0 and r.seconds > 0 for r in results)


def test_gradient_accumulation_equals_the_full_batch(digits) -> None:
    full = trainer(digits, batch_size=128, optimizer="sgd", lr=0.1)
    accumulated = trainer(digits, batch_size=128, optimizer="sgd", lr=0.1, max_micro_batch=32)
    assert accumulated.settings.micro_batch == 32
    a, b = full.run_epoch(), accumulated.run_epoch()
    assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
    for p, q in zip(full.model.parameters(), accumulated.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_resumes_exactly_and_loads_without_pickle(digits) -> None:
    straight = trainer(digits, "cnn")  # dropout: the RNG state must be restored too
    expected = [straight.run_epoch().val_loss for _ in range(3)]
    first = trainer(digits, "cnn")
    first.run_epoch()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = trainer(digits, "cnn")
    resumed.load_state_dict(state)
    assert resumed.epoch == 1
    rest = [resumed.run_epoch().val_loss for _ in range(2)]
    assert rest == pytest.approx(expected[1:], rel=1e-6)


def test_divergence_is_raised(digits) -> None:
    t = trainer(digits, optimizer="sgd", lr=1e6, momentum=0.9)
    with pytest.raises(Diverged):
        for _ in range(3):
            t.run_epoch()


def test_warmup_ramps_the_lr_linearly(digits) -> None:
    t = trainer(digits, lr=0.1, warmup_epochs=1.0)  # 16 steps per epoch
    assert t._lr_at(0) == pytest.approx(0.1 / 16)
    assert t._lr_at(7) == pytest.approx(0.1 * 8 / 16)
    assert t._lr_at(15) == t._lr_at(100) == pytest.approx(0.1)


def test_noise_scale_is_measured_per_epoch_without_changing_the_gradient(digits) -> None:
    plain = trainer(digits, batch_size=64, optimizer="sgd", lr=0.05)
    measured = trainer(digits, batch_size=64, optimizer="sgd", lr=0.05, noise_scale=True)
    assert measured.settings.micro_batch == 32  # two halves per step
    a, b = plain.run_epoch(), measured.run_epoch()
    assert a.noise_scale is None
    assert b.noise_scale is not None and b.noise_scale > 0
    assert b.grad_sq_norm > 0 and b.grad_trace > 0
    assert b.noise_scale == pytest.approx(b.grad_trace / b.grad_sq_norm, rel=1e-6)
    for p, q in zip(plain.model.parameters(), measured.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)



def test_divergence_with_the_noise_scale_on_is_raised_as_divergence(digits) -> None:
    t = trainer(digits, batch_size=64, optimizer="sgd", lr=1e6, momentum=0.0, noise_scale=True)
    with pytest.raises(Diverged):
        for _ in range(3):
            t.run_epoch()


def test_sqrt_adam_scales_betas_and_eps_in_the_optimizer(digits) -> None:
    t = trainer(digits, batch_size=128, optimizer="adam", adam_scale=4.0)
    group = t.optimizer.param_groups[0]
    assert group["betas"] == pytest.approx((0.6, 0.996))
    assert group["eps"] == pytest.approx(5e-9)
    plain = trainer(digits, optimizer="adam").optimizer.param_groups[0]
    assert plain["betas"] == (0.9, 0.999) and plain["eps"] == 1e-8
