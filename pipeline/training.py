"""What every training loop here shares: step-seeded randomness, resumable data order,
checkpoint folders, the training state read safely, mixed precision, loss curves.

Randomness is a function of the step (each micro-step draws from a generator seeded with the
run's seed and the micro-step) and each epoch's data order a function of (seed, epoch), so a
run stopped at a checkpoint and resumed gives exactly the losses of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin

from pipeline.errors import BadData, DatasetConflict, Diverged, InputError
from pipeline.imaging import figure_png, pyplot
from pipeline.parallel import can_start_processes
from pipeline.paths import CHECKPOINT_PREFIX, FLOW_LOG
from pipeline.storage import is_uri

STATE_FILE = "training_state.pt"


class SavedModel(ModelMixin, ConfigMixin):
    """Base of every network saved with ``save_pretrained`` (the synthesizer, the reconstructors).

    Loading always builds real weights: diffusers' default low-memory path builds the module
    under accelerate's ``init_empty_weights``, which patches ``torch.nn.Module`` for the whole
    process; two threads loading at once (two render or generation batches on the thread
    runner) can leave the patch in place and put every later module on the meta device.
    """

    @classmethod
    def from_pretrained(cls, folder, **kwargs):
        """The model saved in ``folder``; anything unreadable or of another kind (a truncated or
        refused weights file, a bad ``config.json``, weights of another shape, another model's
        folder) is bad data naming the folder. Weights are read from safetensors only."""
        from safetensors import SafetensorError

        kwargs["low_cpu_mem_usage"] = False
        kwargs.setdefault("use_safetensors", True)
        config = read_json_file(Path(folder) / "config.json", "model config")
        if not isinstance(config, dict) or config.get("_class_name") != cls.__name__:
            found = config.get("_class_name") if isinstance(config, dict) else None
            raise BadData(f"config.json: holds a {found or 'unknown'} model, expected a {cls.__name__}", folder)
        try:
            return super().from_pretrained(folder, **kwargs)
        except (OSError, ValueError, RuntimeError, TypeError, KeyError, SafetensorError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise BadData(f"cannot load the {cls.__name__} weights: {reason}", folder) from None


def read_json_file(path: Path, what: str):
    """A small JSON file of ours (a model's config or record), or bad data naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadData(f"no {what} ({Path(path).name})", Path(path).parent) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadData(f"{Path(path).name}: not a readable JSON {what} ({str(exc)[:120]})", Path(path).parent) from None


def write_record(folder: Path, name: str, record: dict) -> None:
    """The JSON sidecar a model folder carries beside ``config.json`` (``synthesis.json``,
    ``reconstruction.json``): what trained it and how to use it."""
    (Path(folder) / name).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def save_model_folder(folder: Path, parts: list, record_name: str, record: dict) -> None:
    """A model folder written anew: each of ``parts`` (models, a noise scheduler) through its
    ``save_pretrained``, and the sidecar."""
    def write(tmp: Path) -> None:
        for part in parts:
            part.save_pretrained(tmp)
        write_record(tmp, record_name, record)

    replace_folder(Path(folder), write)


def model_folder(ckpt, needs: tuple[str, ...], written_by: str) -> Path:
    """The model folder of a checkpoint: ``CKPT/model`` (what a training run exports) or ``CKPT``
    itself, whichever holds every file of ``needs``; else bad data naming what was expected."""
    if is_uri(ckpt):  # as a Path, s3://b/x would read as the local folder s3:/b/x
        raise BadData(f"checkpoints are read from the local disk: expected a folder written by '{written_by}', "
                      "not a filesystem URI (copy it to a local folder)", ckpt)
    ckpt = Path(ckpt)
    for folder in (ckpt / "model", ckpt):
        if all((folder / name).is_file() for name in needs):
            return folder
    raise BadData(f"expected a folder written by '{written_by}' (model/ holding {', '.join(needs)} and "
                  "safetensors weights)", ckpt)


def read_record(ckpt, needs: tuple[str, ...], written_by: str) -> dict:
    """The sidecar (the first of ``needs``) of a checkpoint's model folder, as a JSON object."""
    record = read_json_file(model_folder(ckpt, needs, written_by) / needs[0], "model record")
    if not isinstance(record, dict):
        raise BadData(f"{needs[0]}: expected a JSON object", ckpt)
    return record


_GLOBAL_RNG = threading.Lock()


@contextlib.contextmanager
def seeded(seed: int):
    """Draw from torch's global generator as if ``seed`` were its only user: every thread of a
    process shares that generator (module initialisers draw from it), so two trainings started
    together in the flow's threads would interleave their draws. Holders take turns, each on a
    forked state seeded with ``seed``, and leave the global state as they found it."""
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def data_loader(dataset, **kwargs) -> torch.utils.data.DataLoader:
    """A DataLoader with a generator of its own: without one, every iteration draws its workers'
    base seed from torch's global generator, which shifts the draws of a model being initialised
    in another thread (see :func:`seeded`). Where this process may not start processes (a
    daemonic Dask worker), the batches are loaded in it."""
    if not can_start_processes("data loader", kwargs.get("num_workers", 0)):
        kwargs["num_workers"] = 0
    return torch.utils.data.DataLoader(dataset, generator=torch.Generator().manual_seed(0), **kwargs)


def step_generator(seed: int, micro_step: int, process: int = 0) -> torch.Generator:
    """The randomness of one training step, on one process of a launch (each draws its own)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(micro_step) + (int(process) << 48))


class FixedOrder(torch.utils.data.Sampler):
    """The indices of one epoch, from a starting position (for resuming)."""

    def __init__(self, order: list[int], start: int):
        self.order = order[start:]

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic (AVX-512 BF16 or AMX); elsewhere torch emulates bf16,
    slower than fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def mixed_precision(setting: str, device: str) -> str:
    """``auto``: bf16 on a GPU, none on the CPU (the reconstructors trained 5-10x slower in bf16
    autocast on a CPU without bf16 arithmetic; the DDPM's own rule is
    ``pipeline.synthesis.train.ddpm_precision``)."""
    if setting == "auto":
        return "bf16" if device.startswith("cuda") else "no"
    if setting == "fp16" and device == "cpu":
        raise InputError("mixed_precision: fp16 needs a GPU; on the CPU use bf16 (the DDPM steps faster in it on "
                         "CPUs with AVX-512 BF16 or AMX) or no")
    return setting


def accelerator_on(device: str, precision: str, **kwargs):
    """An ``accelerate.Accelerator`` on the resolved ``device`` (``cpu``, ``cuda`` or ``cuda:N``):
    a CPU run stays on the CPU even where a GPU exists.

    On the CPU the accelerator runs in fp32 and :func:`autocast` gives bf16: accelerate fixes one
    precision per process, and a flow trains the DDPM and the reconstructors in one process, each
    at the precision its own config section asks for."""
    from accelerate import Accelerator

    if device.startswith("cuda:"):
        torch.cuda.set_device(int(device.partition(":")[2]))
    resolved = mixed_precision(precision, device)
    return Accelerator(cpu=device == "cpu", mixed_precision="no" if device == "cpu" else resolved, **kwargs)


def autocast(accelerator, device, precision: str):
    """The context a forward pass runs in: accelerate's mixed precision on a GPU, torch's bf16
    autocast on the CPU when ``precision`` resolves to bf16."""
    if torch.device(device).type != "cpu":
        return accelerator.autocast()
    if mixed_precision(precision, "cpu") == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def require_finite_loss(loss: float, step: int, out: Path, learning_rate: str, value: float) -> None:
    """Stop at the first step whose loss is not a number, before it is saved or scored (before,
    the run went on to NaN weights, then a traceback from the evaluation or the summary).
    The checkpoints before it stay; the settings change, so the run starts again."""
    if not math.isfinite(loss):
        raise Diverged(f"the training diverged: its loss is {loss} at step {step}; lower {learning_rate} ({value:g}) "
                       "and start again with --overwrite", out)


def check_output(out: Path, resume: bool) -> None:
    """A folder already holding a run is continued only when asked to."""
    held = [p for p in out.iterdir() if not p.name.startswith(".") and p.name != FLOW_LOG] \
        if out.exists() else []
    if held and not resume:
        raise DatasetConflict("is not empty: pass resume=True to continue its training, overwrite=True to start again, "
                              "or choose a new folder", out)


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(p for p in out.glob(f"{CHECKPOINT_PREFIX}*")
                   if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit())
    return found[-1] if found else None


def load_training_state(path: Path, keys: set[str]) -> dict:
    """A checkpoint's optimiser/schedule/step state, read with ``weights_only=True`` (tensors and
    plain containers only: a pickle that would run code is refused, as bad data naming the file)."""
    try:
        state = torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadData(f"refused or unreadable training state ({first}); delete this checkpoint folder to train "
                      "from the one before it", path) from None
    if not isinstance(state, dict) or not keys <= set(state):
        raise BadData(f"not a training state of this trainer (expected keys {', '.join(sorted(keys))})", path)
    return state


def save_checkpoint(out: Path, step: int, write, keep: int) -> Path:
    """``out/checkpoint-NNNNNN``: ``write(folder)`` fills a temporary folder that is then moved
    into place; only the newest ``keep`` checkpoints stay."""
    folder = out / f"{CHECKPOINT_PREFIX}{step:06d}"
    replace_folder(folder, write)
    for old in sorted(out.glob(f"{CHECKPOINT_PREFIX}*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def replace_folder(folder: Path, write) -> None:
    """``folder`` written anew through a temporary folder (readers never see half of it)."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def loss_curve_png(series: dict[str, list[float]], title: str, ylabel: str, log: bool = True) -> bytes:
    """Each named series per step (faint) with its running mean; ``series`` values may be
    ``(steps, values)`` pairs for series measured every so many steps."""
    fig, axis = pyplot().subplots(figsize=(6.5, 3.6))
    colours = iter(["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"])
    for name, values in series.items():
        colour = next(colours)
        if isinstance(values, tuple):
            axis.plot(values[0], values[1], "o-", color=colour, label=name, markersize=3)
            continue
        steps = np.arange(1, len(values) + 1)
        axis.plot(steps, values, color=colour, alpha=0.3)
        window = max(1, len(values) // 20)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid") if len(values) >= window else values
        axis.plot(steps[window - 1:], smooth, color=colour, label=f"{name} (mean of {window})")
    axis.set(xlabel="step", ylabel=ylabel, title=title)
    if log:
        axis.set_yscale("log")
    axis.legend()
    return figure_png(fig)
