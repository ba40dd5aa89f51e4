"""Training: the demo preset reaches the accuracy the issue asks for on real MNIST; runs repeat; progress flows."""
from __future__ import annotations

import pytest
import torch

from tanas_core.data.suites import get_suite
from tanas_core.data.tasks import make_splits
from tanas_core.errors import Cancelled
from tanas_core.networks.devices import resolve_device
from tanas_core.training.trainer import get_preset, train_network
from tanas_core.workspace.context import RunContext


def test_demo_preset_reaches_95_percent_on_mnist_10class(real_data):
    suite = get_suite("mnist4")
    preset = get_preset("demo")
    splits = make_splits(suite.task("mnist-10class"), preset.sizes, seed=0, spec=suite.spec)
    result = train_network(splits, "vgg16", preset, seed=0, device="cpu")
    assert result.test_accuracy >= 0.95, result.test_accuracy
    assert result.params == sum(p.numel() for p in result.model.parameters())
    assert result.device == "cpu" and result.seconds > 0 and len(result.history) == preset.epochs


def test_same_seed_same_weights_and_progress_reported(real_data, tiny_preset):
    suite = get_suite("mnist4")
    splits = make_splits(suite.task("mnist-digit0"), tiny_preset.sizes, seed=3, spec=suite.spec)
    seen = []
    first = train_network(splits, "resnet18", tiny_preset, seed=3, device="cpu",
                          context=RunContext(None, "cpu", on_progress=lambda message, f: seen.append((message, f))))
    second = train_network(splits, "resnet18", tiny_preset, seed=3, device="cpu")
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and len(set(fractions)) == len(seen) and fractions[-1] == 1.0
    assert seen[0][0].startswith("epoch 1/1, step 1/")
    other = train_network(splits, "resnet18", tiny_preset, seed=4, device="cpu")
    assert not torch.equal(other.model.head.weight, first.model.head.weight)


def test_stop_request_interrupts_training(real_data, tiny_preset):
    suite = get_suite("mnist4")
    splits = make_splits(suite.task("mnist-digit0"), tiny_preset.sizes, seed=0, spec=suite.spec)
    with pytest.raises(Cancelled):
        train_network(splits, "vgg16", tiny_preset, device="cpu", context=RunContext(None, cancelled=lambda: True))


def test_device_resolution():
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")


def test_averaged_iterates_are_the_mean_of_every_step_with_batchnorm_recomputed(real_data, tiny_preset):
    """Theorem 1's averaged iterates, against a brute-force mean of the recorded iterates; BatchNorm's statistics
    are those of the averaged weights on the training images, not the last iterate's."""
    from dataclasses import replace

    from tanas_core.training.trainer import AVERAGING_LR_SHARE, average_iterates, fit

    suite = get_suite("mnist4")
    preset = replace(tiny_preset, batch_size=40, averaging_epochs=1.0)
    splits = make_splits(suite.task("mnist-digit0"), preset.sizes, seed=0, spec=suite.spec)
    trained = train_network(splits, "vgg16", replace(preset, averaging_epochs=0.0), seed=0, device="cpu").model
    x, y = splits.tensors("train")
    averaged, entry = average_iterates(trained, x, y, preset, seed=0, device=torch.device("cpu"))
    # the same run again (training repeats exactly), keeping every iterate: the brute-force reference
    iterates = []
    again = train_network(splits, "vgg16", replace(preset, averaging_epochs=0.0), seed=0, device="cpu").model
    fit(again, x, y, preset, 1.0, 0 + 7919, "cpu", lr=AVERAGING_LR_SHARE * preset.lr,
        after_step=lambda model: iterates.append({k: v.detach().clone() for k, v in model.named_parameters()}))
    assert entry["averaged_steps"] == len(iterates) == len(y) // preset.batch_size
    for name, parameter in averaged.named_parameters():
        mean = torch.stack([step[name] for step in iterates]).mean(0)
        torch.testing.assert_close(parameter, mean, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.allclose(averaged.head.weight, again.head.weight), "averaging left the last iterate"
    # the first BatchNorm follows a convolution alone: its running mean is that convolution's per-channel mean over
    # the training images (equal batches, so update_bn's cumulative average is the plain mean)
    batchnorms = [m for m in averaged.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    convolution = next(m for m in averaged.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        expected = convolution(x).mean(dim=(0, 2, 3))
    torch.testing.assert_close(batchnorms[0].running_mean, expected, rtol=1e-4, atol=1e-5)
    last_iterate_bn = [m for m in again.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    assert not torch.allclose(last_iterate_bn.running_mean, expected, atol=1e-5)


def test_the_epsilon_policy_stops_at_epsilon_or_says_why_not(real_data, tiny_preset):
    from dataclasses import replace

    suite = get_suite("mnist4")
    splits = make_splits(suite.task("mnist-digit0"), tiny_preset.sizes, seed=0, spec=suite.spec)
    reachable = train_network(splits, "vgg16", replace(tiny_preset, epsilon=0.9, max_epochs=4), device="cpu")
    assert reachable.stopped.startswith("epsilon reached") and len(reachable.history) == 1
    assert reachable.history[-1]["val_accuracy"] >= 0.1
    unreachable = train_network(splits, "vgg16", replace(tiny_preset, epsilon=0.0, max_epochs=3), device="cpu")
    assert unreachable.stopped.startswith(("plateau", "budget")), unreachable.stopped
    assert 1 <= len(unreachable.history) <= 3
    rounds = [entry["val_accuracy"] for entry in unreachable.history]
    assert all(0.0 <= a < 1.0 for a in rounds)
    if unreachable.stopped.startswith("budget"):
        assert len(unreachable.history) == 3 and all(b >= a + 0.005 for a, b in zip(rounds, rounds[1:]))
    else:
        assert rounds[-1] < max(rounds[:-1], default=-1.0) + 0.005
    # the policy and averaging enter the network key only when on: stored networks keep theirs
    assert "max_epochs" not in tiny_preset.to_dict() and replace(tiny_preset, max_epochs=4).to_dict()["max_epochs"] == 4
    assert get_preset("epsilon-avg").preconditions == ("until epsilon = 0.05 (at most 12 epochs), averaged over 1 "
                                                       "more epoch(s)")
    # what the curve's "trained for" says: the schedule, the training images, then the preconditions
    assert get_preset("epsilon-avg").budget == ("rounds of 3 epochs on 2,000 training images, until epsilon = 0.05 "
                                                "(at most 12 epochs), averaged over 1 more epoch(s)")
    assert get_preset("long-avg").budget == ("8 epochs (densenet121: 6) on 8,000 training images, averaged over 2 "
                                             "more epoch(s)")
    assert replace(tiny_preset, epochs=1, arch_epochs={}).budget.startswith("1 epoch on ")
