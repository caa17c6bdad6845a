"""One process of `test_modeling_miracle.test_attribute_mean_cache_is_the_same_in_every_process`: a latent-only
training step on its own batch in a two-process gloo group; writes its cache and its batch's prior means."""

import json
import os
import sys

import torch
import torch.distributed as dist


def main(rank: int, world_size: int, port: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.conftest import make_model

    model = make_model(use_posterior=False).train()
    generator = torch.Generator().manual_seed(rank)
    size = 3 + rank  # different batch sizes: the global mean weights every row the same
    prior_input_ids = torch.randint(5, 100, (size, 7), generator=generator)
    attribute_ids = torch.tensor([0, 1, 0, 1][:size]) if rank == 0 else torch.tensor([0, 0, 0, 0])
    output = model(prior_input_ids=prior_input_ids, attribute_ids=attribute_ids,
                   aspect_ids=torch.zeros(size, dtype=torch.long))
    prior_mu = output.prior_mu.detach()  # the means L_D averages (encoder dropout on: taken from this step)
    record = {"cache": model.attribute_mean_cache.tolist(), "seen": model.attribute_mean_seen.tolist(),
              "prior_mu": prior_mu.tolist(), "attribute_ids": attribute_ids.tolist(),
              "distance_loss": float(output.distance_loss)}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(record, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
