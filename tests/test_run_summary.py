"""What `miracle train` says before its first step: epochs actually run, memory and disk of a save; and what the
model card records."""

from types import SimpleNamespace

import torch

from modeling_miracle.training.run_summary import describe_footprint, format_epochs


def test_epochs_are_the_steps_over_the_batches_per_epoch_not_rounded_up():
    state = SimpleNamespace(max_steps=5, num_train_epochs=3)
    args = SimpleNamespace(gradient_accumulation_steps=1)
    assert format_epochs(state, args, train_dataloader=[0, 1]) == "2.5 epoch(s)"
    assert format_epochs(state, SimpleNamespace(gradient_accumulation_steps=2), [0, 1, 2, 3]) == "2.5 epoch(s)"
    assert format_epochs(state, args, train_dataloader=None) == "3 epoch(s)"


def test_footprint_counts_weights_gradients_and_adam_state_of_the_trained_part():
    model = torch.nn.Sequential(torch.nn.Linear(1000, 1000), torch.nn.Linear(1000, 100))  # 1,001,000 + 100,100
    model[0].requires_grad_(False)
    text = describe_footprint(model, save_steps=50)
    weights, trained = 1_101_100 * 4, 100_100 * 4
    assert f"about {(weights + 3 * trained) / 1e6:.1f} MB of memory" in text
    assert f"each checkpoint (every 50 steps) writes about {(weights + 2 * trained) / 1e6:.1f} MB" in text
    assert f"the final model about {weights / 1e6:.1f} MB" in text
