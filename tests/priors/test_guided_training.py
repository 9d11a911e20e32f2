"""Training a conditional (MR-guided) prior: only the PET channel is noised and scored, the T1 channel is zeroed in
about 10% of the samples (classifier-free guidance dropout), the validation batches carry the condition, an
unconditional network's weights start the conditional one exactly, and a tiny training lowers the loss."""
from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.inferers import DiffusionInferer
from monai.networks.nets import DiffusionModelUNet

from diffrecon.checks import InputError
from diffrecon.priors import DiffusionPrior, FixedNoisePrepareBatch, VPSchedule, save_weights
from diffrecon.priors.training import GuidanceDropoutPrepareBatch
from diffrecon.priors.weights import load_widened_weights
from tests.priors.test_adapters_and_conditions import randomised


def unet(in_channels: int) -> DiffusionModelUNet:
    return DiffusionModelUNet(spatial_dims=2, in_channels=in_channels, out_channels=1, channels=(8, 8, 8),
                              attention_levels=(False, False, False), num_res_blocks=1, norm_num_groups=4,
                              num_head_channels=8)


def test_dropout_zeroes_the_mr_of_about_p_of_the_samples_and_noises_only_the_pet():
    torch.manual_seed(0)
    n = 4000
    batch = {"image": torch.rand(n, 1, 4, 4), "mr": 1 + torch.rand(n, 1, 4, 4)}
    images, target, args, kwargs = GuidanceDropoutPrepareBatch(1000, "mr", 0.1)(batch)
    assert kwargs["mode"] == "concat" and args == ()
    torch.testing.assert_close(images, batch["image"])  # the inferer noises the PET image alone
    assert target.shape == images.shape and kwargs["noise"] is target
    condition = kwargs["condition"]
    dropped = (condition == 0).flatten(1).all(1)
    kept = torch.isclose(condition, batch["mr"]).flatten(1).all(1)
    assert bool((dropped ^ kept).all())  # per sample: all of its MR zeroed or all of it kept
    assert 0.085 < dropped.float().mean() < 0.115  # binomial(4000, 0.1): std 0.0047
    assert not GuidanceDropoutPrepareBatch(1000, "mr", 0.0)(batch)[3]["condition"].eq(0).any()


def test_bad_dropout_and_missing_condition_are_refused():
    for bad in (-0.1, 1.0):
        with pytest.raises(InputError, match="dropout must be in"):
            GuidanceDropoutPrepareBatch(1000, "mr", bad)
    with pytest.raises(InputError, match="need the condition key 'mr'"):
        GuidanceDropoutPrepareBatch(1000)({"image": torch.zeros(2, 1, 4, 4)})


def test_validation_batches_carry_the_condition_with_fixed_noise():
    batch = {"image": torch.rand(3, 1, 4, 4), "mr": torch.rand(3, 1, 4, 4), "index": torch.arange(3)}
    prepare = FixedNoisePrepareBatch(1000, [50, 500], seed=1, condition_name="mr")
    first, again = prepare(batch)[3], prepare(batch)[3]
    assert first["mode"] == "concat" and torch.equal(first["condition"], batch["mr"])
    assert torch.equal(first["noise"], again["noise"]) and first["timesteps"].tolist() == [50, 500, 50]
    assert "mode" not in FixedNoisePrepareBatch(1000, [50])({k: batch[k] for k in ("image", "index")})[3]


def test_widened_weights_start_as_the_unconditional_network(tmp_path):
    torch.manual_seed(0)
    plain = randomised(unet(1))
    path = save_weights(tmp_path / "model_axial.pt", plain)
    widened = load_widened_weights(unet(2), path).eval()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 700])
    for mr in (torch.zeros(2, 1, 8, 8), torch.rand(2, 1, 8, 8)):  # any MR: the new kernels are zero
        torch.testing.assert_close(widened(torch.cat((x, mr), 1), t), plain(x, t))
    again = save_weights(tmp_path / "conditional.pt", widened)
    torch.testing.assert_close(load_widened_weights(unet(2), again).conv_in.conv.weight, widened.conv_in.conv.weight)
    with pytest.raises(InputError, match="do not fit this network beyond its input channels"):
        load_widened_weights(DiffusionModelUNet(spatial_dims=2, in_channels=2, out_channels=1, channels=(8, 8, 16),
                                                attention_levels=(False, False, False), num_res_blocks=1,
                                                norm_num_groups=4, num_head_channels=8), path)


def test_a_tiny_guided_training_lowers_the_loss_and_learns_to_use_the_mr():
    """PET = 2 x MR + noise-free: the conditional prior can only denoise well where it reads the MR."""
    torch.manual_seed(0)
    schedule = VPSchedule()
    mr = torch.rand(16, 1, 8, 8)
    data = [{"image": 2 * m, "mr": m} for m in mr]
    network = unet(2)
    loader = torch.utils.data.DataLoader(data * 8, batch_size=16, shuffle=True)
    validation = {"image": torch.stack([d["image"] for d in data]), "mr": mr, "index": torch.arange(16)}
    check = FixedNoisePrepareBatch(1000, [100, 300, 600], seed=3, condition_name="mr")
    inferer = DiffusionInferer(schedule)

    def loss(condition: torch.Tensor) -> float:
        images, target, _, kwargs = check({**validation, "mr": condition})
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(inferer(images, network.eval(), **kwargs), target))

    before = loss(mr)
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=6, train_data_loader=loader, network=network,
                                optimizer=torch.optim.Adam(network.parameters(), 3e-3),
                                loss_function=torch.nn.MSELoss(), inferer=inferer,
                                prepare_batch=GuidanceDropoutPrepareBatch(1000, "mr", 0.1))
    trainer.run()
    after, without_mr = loss(mr), loss(torch.zeros_like(mr))
    assert after < 0.5 * before
    assert after < without_mr  # the MR channel is read: zeroing it costs
    prior = DiffusionPrior(network.eval(), schedule, size_multiple=4)
    assert prior.condition_channels == 1
