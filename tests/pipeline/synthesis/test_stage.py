"""The conditional DDPM: objective, overfitting, exact resume, deterministic sampling, CLI."""

import json

import numpy as np
import pytest
import torch

from flows.cli import main
from pipeline.config import SynthesisConfig
from pipeline.data import ShardWriter, validate_dataset
from pipeline.data.reader import ShardDataset, collate_samples
from pipeline.synthesis.data import model_dataset, shifted
from pipeline.synthesis.model import HandObjectUNet, x0_from_v
from pipeline.synthesis.objective import diffusion_loss, loss_weights
from pipeline.synthesis.presets import PRESETS, resolve
from pipeline.synthesis.sample import denoise, scheduler_for
from pipeline.synthesis.train import STATE_KEYS, _micro_step, noise_scheduler, train
from pipeline.training import STATE_FILE, latest_checkpoint, load_training_state

import dataset_fixtures as fx

TINY = resolve("tiny").model_copy(update={"num_workers": 0, "sample_every": 1000, "checkpoint_every": 2,
                                          "batch_size": 4})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    with ShardWriter(out, name="maps", image_size=32, rows_per_shard=8) as writer:
        writer.write_rows(fx.make_map_rows(12))
    return out


def test_loss_weights_follow_the_mask_and_clip_the_snr():
    scheduler = noise_scheduler(TINY)
    mask = torch.zeros(2, 4, 4, dtype=torch.uint8)
    mask[0, 1:3, 1:3], mask[1, 0, :] = 1, 2
    timesteps = torch.tensor([0, 999])
    weights = loss_weights(mask, timesteps, scheduler.alphas_cumprod, 0.1, 5.0)
    snr = scheduler.alphas_cumprod[timesteps] / (1 - scheduler.alphas_cumprod[timesteps])
    assert snr[0] > 1e3 and snr[1] < 1e-3
    assert torch.allclose(weights[0, 0], torch.where(mask[0] > 0, 5.0, 0.5))  # clipped at gamma = 5
    assert torch.allclose(weights[1, 0], torch.where(mask[1] > 0, 1.0, 0.1) * snr[1])
    assert torch.allclose(loss_weights(mask, timesteps, scheduler.alphas_cumprod, 0.1, None)[0, 0, 1, 1], snr[0])
    predicted, target = torch.ones(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    expected = (weights * 1.0).expand(2, 3, 4, 4).mean()
    assert torch.isclose(diffusion_loss(predicted, target, mask, timesteps, scheduler.alphas_cumprod), expected)


def test_shifting_moves_each_image_with_its_maps_and_mask():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(6, 3, 16, 16) * 2 - 1
    batch = {"image": image, "normal": image.clone(), "texture": image.clone(),
             "mask": (image[:, 0] > 0).to(torch.uint8), "quat": torch.rand(6, 4)}
    assert shifted(batch, 0, generator) is batch
    moved = shifted(batch, 3, generator)
    assert moved["quat"] is batch["quat"]
    for key in ("image", "normal", "texture", "mask"):
        assert moved[key].shape == batch[key].shape and moved[key].dtype == batch[key].dtype
    assert torch.equal(moved["normal"], moved["image"]) and torch.equal(moved["texture"], moved["image"])
    assert torch.equal(moved["mask"], (moved["image"][:, 0] > 0).to(torch.uint8))
    for i in range(6):  # each sample is its original moved by one offset of at most 3 pixels
        matches = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                   if torch.equal(moved["image"][i, :, 3:13, 3:13], image[i, :, 3 - dy:13 - dy, 3 - dx:13 - dx])]
        assert len(matches) == 1
    assert not torch.equal(moved["image"], image)


def test_models_loaded_from_many_threads_leave_torch_on_real_devices(tmp_path):
    """diffusers' default loading patches torch.nn.Module process-wide; threads loading at once
    (generation batches on the thread runner) once left every later module on the meta device."""
    import threading

    HandObjectUNet().save_pretrained(tmp_path)

    def load():
        for _ in range(10):
            assert HandObjectUNet.from_pretrained(tmp_path).unet.conv_in.weight.device.type == "cpu"

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert torch.nn.Linear(2, 2).weight.device.type == "cpu"


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_tiny_model_overfits_a_fixed_batch(prediction, data):
    torch.manual_seed(0)
    config = TINY.model_copy(update={"quat_drop_prob": 0.0, "prediction": prediction})
    model = HandObjectUNet.from_synthesis_config(config)
    scheduler = noise_scheduler(config)
    dataset = model_dataset(data, 32)
    batch = collate_samples([dataset[i] for i in range(8)])
    timesteps = torch.tensor([50, 150, 300, 450, 600, 750, 850, 950])
    noise = torch.randn(batch["image"].shape, generator=torch.Generator().manual_seed(0))

    def held_loss():
        with torch.no_grad():
            noisy = scheduler.add_noise(batch["image"], noise, timesteps)
            predicted = model(noisy, timesteps, batch["normal"], batch["texture"], batch["quat"])
            return float(diffusion_loss(predicted, batch["image"], batch["mask"], timesteps, scheduler.alphas_cumprod))

    before = held_loss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(40):
        _micro_step(model, scheduler, scheduler.alphas_cumprod, batch, config, 0, step, "cpu").backward()
        optimizer.step()
        optimizer.zero_grad()
    assert held_loss() < before / {"x0": 4, "v": 2}[prediction]  # v starts nearer: its x0 is about x_t at low noise


CPU = resolve("cpu").model_copy(update={"num_workers": 0, "sample_every": 1000, "checkpoint_every": 2,
                                        "batch_size": 2, "sample_steps": 2})


@pytest.mark.parametrize("config", [TINY, CPU, CPU.model_copy(update={"augment_shift_px": 3}),
                                    CPU.model_copy(update={"lr_schedule": "cosine", "warmup_steps": 0, "max_steps": 4,
                                                           "max_steps_bf16": None}),
                                    CPU.model_copy(update={"maps_every_resolution": True})],
                         ids=["tiny", "cpu", "cpu-shifted", "cpu-cosine-lr", "cpu-maps-every-resolution"])
def test_stopping_and_resuming_gives_the_same_next_losses(config, data, tmp_path):
    whole = train(data, tmp_path / "whole", config, max_steps=4, progress=False)
    train(data, tmp_path / "split", config, max_steps=2, progress=False)
    resumed = train(data, tmp_path / "split", config, max_steps=4, resume=True, progress=False)
    assert resumed["steps"] == whole["steps"] == 4
    losses = [json.loads((tmp_path / name / "loss.json").read_text())["loss"] for name in ("whole", "split")]
    assert len(losses[0]) == 4 and losses[0] == losses[1]
    a = HandObjectUNet.from_pretrained(tmp_path / "whole" / "model").state_dict()
    b = HandObjectUNet.from_pretrained(tmp_path / "split" / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "whole" / "loss_curve.png").stat().st_size > 1000
    assert (tmp_path / "whole" / "samples-000004.png").exists()
    state = load_training_state(latest_checkpoint(tmp_path / "split") / STATE_FILE, STATE_KEYS)
    warmed = config.learning_rate * min(1.0, 4 / max(config.warmup_steps, 1))
    assert state["lr_schedule"]["_last_lr"][0] == pytest.approx(0.0 if config.lr_schedule == "cosine" else warmed)


@pytest.mark.slow
def test_bf16_on_the_cpu_trains_in_one_process_beside_fp32(data, tmp_path):
    """accelerate fixes one precision per process; on the CPU bf16 is torch's autocast, so a flow
    can train the DDPM in bf16 and, in the same process, its reconstructors in fp32."""
    from pipeline.errors import InputError
    from pipeline.training import mixed_precision

    fp32, bf16 = (TINY.model_copy(update={"mixed_precision": precision}) for precision in ("no", "bf16"))
    runs = (("fp32", fp32), ("bf16", bf16), ("fp32 again", fp32))
    losses = {}
    for name, config in runs:
        train(data, tmp_path / name, config, max_steps=2, progress=False)
        losses[name] = np.array(json.loads((tmp_path / name / "loss.json").read_text())["loss"])
    assert np.array_equal(losses["fp32"], losses["fp32 again"])
    assert not np.array_equal(losses["bf16"], losses["fp32"]), "the forward pass ran in bf16"
    assert np.allclose(losses["bf16"], losses["fp32"], rtol=0.05)
    with pytest.raises(InputError, match="fp16 needs a GPU"):
        mixed_precision("fp16", "cpu")


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_precision_takes_bf16_only_on_a_cpu_that_computes_in_it(has_bf16, monkeypatch):
    from pipeline.synthesis import train as ddpm_training

    monkeypatch.setattr(ddpm_training, "cpu_has_bf16", lambda: has_bf16)
    assert ddpm_training.ddpm_precision("auto", "cpu") == ("bf16" if has_bf16 else "no")
    assert ddpm_training.ddpm_precision("no", "cpu") == "no"
    assert ddpm_training.ddpm_precision("auto", "cuda") == "bf16"


def test_bf16_steps_apply_only_in_bf16_and_never_over_steps_the_config_sets(data, tmp_path):
    """The cpu preset trains more steps where they are faster; a config's own max_steps wins."""
    from pipeline.synthesis.train import default_steps

    preset = resolve("cpu")
    assert default_steps(preset, "bf16") == preset.max_steps_bf16 > default_steps(preset, "no") == preset.max_steps
    explicit = resolve(overrides=SynthesisConfig(preset="cpu", max_steps=60))
    assert default_steps(explicit, "bf16") == default_steps(explicit, "no") == 60
    config = TINY.model_copy(update={"max_steps": 2, "max_steps_bf16": 3})
    for precision, steps in (("bf16", 3), ("no", 2)):
        summary = train(data, tmp_path / precision, config.model_copy(update={"mixed_precision": precision}),
                        progress=False)
        assert (summary["precision"], summary["steps"]) == (precision, steps)


def test_the_texture_residual_paints_the_plain_render_where_the_network_adds_nothing():
    config = CPU.model_copy(update={"image_size": 32})
    model = HandObjectUNet.from_synthesis_config(config)
    torch.nn.init.zeros_(model.unet.conv_out.weight)
    torch.nn.init.zeros_(model.unet.conv_out.bias)
    texture = torch.rand(2, 3, 32, 32) * 2 - 1
    quat = torch.nn.functional.normalize(torch.randn(2, 4), dim=1)
    x0 = model(torch.randn(2, 3, 32, 32), torch.tensor([10, 900]), torch.zeros_like(texture), texture, quat)
    assert torch.equal(x0, texture)
    direct = HandObjectUNet.from_synthesis_config(config.model_copy(update={"texture_residual": False}))
    direct.load_state_dict(model.state_dict())
    assert direct(torch.randn(2, 3, 32, 32), torch.tensor([10, 900]), torch.zeros_like(texture), texture,
                  quat).abs().max() == 0
    assert HandObjectUNet.from_config(model.config).texture_residual  # saved with the weights


@pytest.mark.parametrize("residual", [True, False])
def test_v_prediction_recovers_x0_from_the_true_v_of_the_residual(residual):
    config = CPU.model_copy(update={"image_size": 32, "prediction": "v", "texture_residual": residual})
    model = HandObjectUNet.from_synthesis_config(config)
    x0, texture, noise = (torch.rand(3, 3, 32, 32) * 2 - 1 for _ in range(3))
    timesteps = torch.tensor([0, 500, 999])
    a = noise_scheduler(config).alphas_cumprod[timesteps][:, None, None, None]
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
    prior = texture if residual else torch.zeros_like(texture)
    true_v = a.sqrt() * noise - (1 - a).sqrt() * (x0 - prior)
    assert torch.allclose(x0_from_v(noisy, true_v, model.alphas_cumprod[timesteps], prior), x0, atol=1e-5)
    torch.nn.init.zeros_(model.unet.conv_out.weight)
    torch.nn.init.zeros_(model.unet.conv_out.bias)
    quat = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    untrained = model(noisy, timesteps, torch.zeros_like(texture), texture, quat)
    assert (untrained[2] - prior[2]).abs().max() < 0.02  # all noise: the prior (the plain render, or 0)
    assert (untrained[0] - noisy[0]).abs().max() < 0.01  # almost no noise: its input, not undone
    loaded = HandObjectUNet.from_config(model.config)
    assert loaded.prediction == "v" and torch.equal(loaded.alphas_cumprod, model.alphas_cumprod)


def test_maps_at_every_resolution_start_as_the_plain_model_and_train_their_injections(tmp_path):
    config = CPU.model_copy(update={"image_size": 32})
    plain = HandObjectUNet.from_synthesis_config(config)
    model = HandObjectUNet.from_synthesis_config(config.model_copy(update={"maps_every_resolution": True}))
    assert set(model.load_state_dict(plain.state_dict(), strict=False).missing_keys) == {
        f"map_injections.{i}.{name}" for i in range(len(config.block_out_channels)) for name in ("weight", "bias")}
    noisy, normal, texture = (torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(3))
    quat = torch.nn.functional.normalize(torch.randn(2, 4), dim=1)
    timesteps = torch.tensor([10, 900])
    x0 = model(noisy, timesteps, normal, texture, quat)
    assert torch.equal(x0, plain(noisy, timesteps, normal, texture, quat))  # zero convolutions: the same model
    x0.square().mean().backward()
    assert all(conv.weight.grad.abs().sum() > 0 for conv in model.map_injections)
    with torch.no_grad():
        for conv in model.map_injections:
            conv.weight.normal_(std=0.1)
    assert not torch.allclose(model(noisy, timesteps, normal, texture, quat), x0)
    model.save_pretrained(tmp_path)
    loaded = HandObjectUNet.from_pretrained(tmp_path)
    assert loaded.maps_every_resolution and torch.equal(loaded.map_injections[0].weight, model.map_injections[0].weight)


def test_the_cpu_preset_attends_nowhere_and_older_model_folders_keep_the_middle_attention(tmp_path):
    from diffusers.models.attention_processor import Attention

    def attends(model):
        return any(isinstance(module, Attention) for module in model.modules())

    config = CPU.model_copy(update={"image_size": 32})  # no attention in the down and up blocks
    model = HandObjectUNet.from_synthesis_config(config)
    assert not attends(model)  # nor in the middle block: the cpu preset has none
    config = config.model_copy(update={"middle_attention": True})
    assert attends(HandObjectUNet.from_synthesis_config(config))
    model.save_pretrained(tmp_path / "new")
    assert not attends(HandObjectUNet.from_pretrained(tmp_path / "new"))
    HandObjectUNet.from_synthesis_config(config).save_pretrained(tmp_path / "old")
    record = json.loads((tmp_path / "old" / "config.json").read_text())
    del record["middle_attention"]  # a model folder written before the option
    (tmp_path / "old" / "config.json").write_text(json.dumps(record))
    assert attends(HandObjectUNet.from_pretrained(tmp_path / "old"))


class Oracle(torch.nn.Module):
    """A 'model' that always predicts the true x0 (for checking the samplers)."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.config = type("Config", (), {"image_size": x0.shape[-1]})

    def forward(self, sample, timesteps, normal, texture, quat, drop_quat=None, drop_maps=None):
        return self.x0.repeat(sample.shape[0] // self.x0.shape[0], 1, 1, 1)


@pytest.mark.parametrize("name,steps", [("ddpm", 50), ("ddim", 10), ("dpm", 10)])
def test_each_scheduler_recovers_a_perfect_x0(name, steps):
    x0 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 1.8 - 0.9
    batch = {"normal": torch.zeros(2, 3, 8, 8), "texture": torch.zeros(2, 3, 8, 8), "quat": torch.zeros(2, 4)}
    images = denoise(Oracle(x0), scheduler_for(name, noise_scheduler(TINY).config), batch, steps, 3.0, [1, 2])
    assert (images - x0).abs().max() < 1e-3


def test_the_cosine_schedule_reaches_the_samplers():
    cosine = noise_scheduler(TINY.model_copy(update={"beta_schedule": "squaredcos_cap_v2"}))
    linear = noise_scheduler(TINY)
    middle = len(cosine.alphas_cumprod) // 2
    assert cosine.alphas_cumprod[middle] > linear.alphas_cumprod[middle] + 0.1, "cosine keeps more signal mid-way"
    x0 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 1.8 - 0.9
    batch = {"normal": torch.zeros(2, 3, 8, 8), "texture": torch.zeros(2, 3, 8, 8), "quat": torch.zeros(2, 4)}
    for name in ("ddim", "dpm"):
        sampler = scheduler_for(name, cosine.config)
        assert torch.allclose(sampler.alphas_cumprod, cosine.alphas_cumprod)
        assert (denoise(Oracle(x0), sampler, batch, 10, 3.0, [1, 2]) - x0).abs().max() < 1e-3


def test_generation_is_deterministic_per_seed_and_independent_of_batch_size(data, tmp_path):
    train(data, tmp_path / "ckpt", TINY, max_steps=2, progress=False)
    from pipeline.synthesis.sample import generate

    outputs = {}
    for name, seed, batch_size in (("a", 0, 4), ("b", 0, 5), ("c", 1, 4)):
        generate(tmp_path / "ckpt", data, tmp_path / name, scheduler="ddpm", steps=8, seed=seed, batch_size=batch_size,
                 progress=False)
        outputs[name] = np.stack([s["image"].numpy() for s in ShardDataset(tmp_path / name, columns=["image"])])
    assert np.abs(outputs["a"].astype(int) - outputs["b"]).max() <= 1
    assert np.abs(outputs["a"].astype(int) - outputs["c"]).mean() > 5
    rows = ShardDataset(tmp_path / "a", columns=["source", "gen", "sample_id"])
    assert all(r["source"] == "synthetic" and r["gen"]["steps"] == 8 and r["gen"]["scheduler"] == "ddpm" for r in rows)
    assert validate_dataset(tmp_path / "a")["ok"]


def test_cli_train_generate_and_bad_input(data, tmp_path, capsys):
    assert main(["synth", "train", "--data", str(data), "--out", str(tmp_path / "ckpt"), "--preset", "tiny",
                 "--max-steps", "2"]) == 0
    assert main(["synth", "generate", "--ckpt", str(tmp_path / "ckpt"), "--specs", str(data), "--out",
                 str(tmp_path / "gen"), "--scheduler", "dpm", "--steps", "4", "--guidance", "2"]) == 0
    assert main(["data", "validate", str(tmp_path / "gen")]) == 0
    capsys.readouterr()
    with ShardWriter(tmp_path / "nomaps", name="nomaps", image_size=16) as writer:
        writer.write_rows([fx.make_row(i) for i in range(3)])
    assert main(["synth", "train", "--data", str(tmp_path / "nomaps"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "demo/0000" in err and "normal" in err and "render conditions" in err
    assert main(["synth", "train", "--data", str(data), "--out", str(tmp_path / "ckpt"), "--max-steps", "2"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_generation_samples_with_the_configs_sampler_else_the_checkpoints_and_names_the_preset(data, tmp_path):
    from pipeline.synthesis.stage import GenerateInputs, synth_generate

    from conftest import make_config

    train(data, tmp_path / "ckpt", TINY, max_steps=2, progress=False)
    inputs = GenerateInputs(ckpt=str(tmp_path / "ckpt"), specs=str(data))
    cpu = make_config({"synthesis.preset": "cpu"})
    synth_generate(cpu, inputs, tmp_path / "cpu")
    gen = [r["gen"] for r in ShardDataset(tmp_path / "cpu", columns=["gen"])]
    sampler = PRESETS["cpu"]["sample_steps"], PRESETS["cpu"]["guidance"]
    assert sampler != (SynthesisConfig().sample_steps, SynthesisConfig().guidance)
    assert all((g["steps"], g["guidance"]) == sampler for g in gen)  # the cpu preset's sampler, not the defaults
    explicit = make_config({"synthesis.preset": "cpu", "synthesis.sample_steps": 3, "synthesis.guidance": 2.0})
    synth_generate(explicit, inputs, tmp_path / "explicit")
    assert all(r["gen"]["steps"] == 3 and r["gen"]["guidance"] == 2.0
               for r in ShardDataset(tmp_path / "explicit", columns=["gen"]))  # the config's keys win
    tiny = make_config({"synthesis.preset": "tiny"})
    assert synth_generate.identity_parts(cpu, inputs)["settings"] != synth_generate.identity_parts(tiny, inputs)[
        "settings"]  # the same checkpoint sampled under another preset is not reused
    trained_with = {"sample_scheduler": "ddim", "sample_steps": 4, "guidance": 1.5}  # what its preset samples with
    train(data, tmp_path / "ckpt_ddim", TINY.model_copy(update=trained_with), max_steps=2, progress=False)
    synth_generate(make_config({}), GenerateInputs(ckpt=str(tmp_path / "ckpt_ddim"), specs=str(data)),
                   tmp_path / "unset")
    assert all((r["gen"]["scheduler"], r["gen"]["steps"], r["gen"]["guidance"]) == ("ddim", 4, 1.5)
               for r in ShardDataset(tmp_path / "unset", columns=["gen"]))  # a config that sets none: the checkpoint's


@pytest.mark.parametrize("overrides, message", [
    ({"block_out_channels": [0, 8]}, "synthesis.block_out_channels: expected widths that synthesis.norm_num_groups"),
    ({"block_out_channels": [12, 24]}, "norm_num_groups \\(8\\) divides, got \\[12, 24\\]"),
    ({"image_size": 36, "block_out_channels": [8, 16, 16, 16]}, "synthesis.image_size: 36 px is not halved 3 times"),
    ({"attention_resolutions": [3]}, "attention_resolutions: \\[3\\] are not feature-map sides .* \\[32, 16\\]")])
def test_a_network_the_preset_cannot_build_is_a_config_error(overrides, message):
    """Checked once the preset is filled in: the tiny preset's norm groups (8) and sides (32, 16)."""
    from pipeline.config import SynthesisConfig
    from pipeline.errors import ConfigError
    from pipeline.synthesis.presets import resolve

    with pytest.raises(ConfigError, match=message):
        resolve("tiny", SynthesisConfig(**overrides))
    assert resolve("tiny", SynthesisConfig(block_out_channels=[16, 32])).norm_num_groups == 8
