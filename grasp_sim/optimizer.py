"""DexGraspNet's annealed optimiser: RMS-normalised gradient steps with Metropolis acceptance.

Each step proposes new parameters ``p - s · g / (sqrt(ema(g²)) + 1e-6)`` (the running mean of
squared gradients taken over the batch, momentum ``rms_momentum``) and redraws each contact
point with probability ``switch_probability``; each hand keeps its proposal with probability
``min(1, exp((E_old - E_new) / T))``. Step size and temperature decay geometrically; the
number of decays is fixed (120 and 200, DexGraspNet's counts over 6000 steps), so a shorter
run anneals as far, only faster.

Population moves: at ``population_moves`` evenly spaced points in the first
``POPULATION_SPAN`` of the run, the ``population_fraction`` of hands ranked worst are replaced
by perturbed copies of as many best-ranked hands (their contacts included). The rank is the
energy, or a caller's ``rank`` (the grasp stage's: the thumb opposition after a trial closing,
:func:`grasp_sim.pregrasp.opposition_rank`). Both predict validation (in a 640-grasp benchmark
at 300 steps the lower half by energy of each object was accepted 3.6x as often as the upper
half; on the foam brick, optimised hands with a thumb opposition under -0.8 were accepted 8
times in 10, the others 2 in 54), so spending the remaining steps on copies of promising hands
raises acceptance; the copies move apart again under the perturbation and the annealing still
ahead of them, which keeps the grasps diverse.

All randomness comes from one CPU ``torch.Generator``: same seed, same grasps, on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from pipeline.config import GraspConfig

STEP_DECAYS = 120
TEMPERATURE_DECAYS = 200
POPULATION_SPAN = 0.6  # moves happen before this fraction of the run, while the copies can still diverge


@dataclass
class OptimisationResult:
    params: torch.Tensor  # [B, 51]
    contacts: torch.Tensor  # [B, n]
    energy: torch.Tensor  # [B]
    terms: dict[str, torch.Tensor]  # each [B], unweighted
    history: list[float]  # mean energy after each step
    acceptance: float  # fraction of proposals kept


def draw_contacts(geometry, batch: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """Contact slots ``[B, n]`` (positions in the candidate list); slot 0 always on the thumb."""
    candidates = len(geometry.candidate_ids)
    slots = torch.randint(candidates, (batch, n), generator=generator)
    thumb = geometry.thumb_candidates.cpu()
    slots[:, 0] = thumb[torch.randint(len(thumb), (batch,), generator=generator)]
    return slots


def population_move(params: torch.Tensor, contacts: torch.Tensor, badness: torch.Tensor, fraction: float,
                    noise: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the ``fraction`` of hands with the highest ``badness [B]`` (energy, say) by copies of
    as many of the lowest, each parameter moved by Gaussian noise of standard deviation ``noise [51]``."""
    count = int(fraction * len(params))
    if count == 0:
        return params, contacts
    order = torch.argsort(badness.cpu(), stable=True)
    best, worst = order[:count].to(params.device), order[-count:].to(params.device)
    jitter = torch.randn((count, params.shape[1]), generator=generator, dtype=params.dtype).to(params.device)
    params, contacts = params.clone(), contacts.clone()
    params[worst] = params[best] + jitter * noise
    contacts[worst] = contacts[best]
    return params, contacts


def population_noise(config: GraspConfig, like: torch.Tensor) -> torch.Tensor:
    """Per-parameter perturbation of a population copy: translation (m), rotation and angles (rad)."""
    return torch.cat([torch.full((3,), config.population_noise_m), torch.full((3,), config.population_noise_rad),
                      torch.full((45,), config.population_noise_rad)]).to(like)


def move_steps(config: GraspConfig) -> set[int]:
    """The steps after which a population move happens."""
    moves = config.population_moves
    return {int(config.iterations * POPULATION_SPAN * k / (moves + 1)) for k in range(1, moves + 1)} - {0}


def _energy_and_grad(energy, params, contacts):
    params = params.detach().requires_grad_(True)
    total, terms = energy(params, contacts)
    (grad,) = torch.autograd.grad(total.sum(), params)
    return total.detach(), {k: v.detach() for k, v in terms.items()}, grad


def optimise(energy, params: torch.Tensor, geometry, config: GraspConfig, generator: torch.Generator,
             progress: bool = False, rank=None) -> OptimisationResult:
    """Run ``config.iterations`` annealed steps on ``params [B, 51]`` under ``energy``; ``rank``
    (``params -> [B]``, lower is better) orders the hands at population moves, else their energy."""
    device = params.device
    batch = len(params)
    contacts = draw_contacts(geometry, batch, config.contact_points, generator).to(device)
    total, terms, grad = _energy_and_grad(energy, params, contacts)
    ema = torch.zeros(params.shape[1], dtype=params.dtype, device=device)
    step_every = max(1, config.iterations // STEP_DECAYS)
    temperature_every = max(1, config.iterations // TEMPERATURE_DECAYS)
    history, accepted = [], 0
    moves, noise = move_steps(config), population_noise(config, params)
    for step in tqdm(range(config.iterations), desc="optimising", unit="step", disable=not progress, leave=False):
        step_size = config.step_size * config.step_decay ** (step // step_every)
        temperature = config.temperature * config.temperature_decay ** (step // temperature_every)
        ema = config.rms_momentum * ema + (1 - config.rms_momentum) * (grad**2).mean(0)
        proposal = params - step_size * grad / (ema.sqrt() + 1e-6)
        switch = (torch.rand(contacts.shape, generator=generator) < config.switch_probability).to(device)
        fresh = draw_contacts(geometry, batch, config.contact_points, generator).to(device)
        proposed_contacts = torch.where(switch, fresh, contacts)
        new_total, new_terms, new_grad = _energy_and_grad(energy, proposal, proposed_contacts)
        uniform = torch.rand(batch, generator=generator, dtype=params.dtype).to(device)
        keep = uniform < torch.exp((total - new_total) / temperature)
        accepted += int(keep.sum())
        params = torch.where(keep[:, None], proposal, params).detach()
        contacts = torch.where(keep[:, None], proposed_contacts, contacts)
        grad = torch.where(keep[:, None], new_grad, grad)
        total = torch.where(keep, new_total, total)
        terms = {k: torch.where(keep, new_terms[k], terms[k]) for k in terms}
        history.append(float(total.mean()))
        if step in moves:
            badness = total if rank is None else rank(params)
            params, contacts = population_move(params, contacts, badness, config.population_fraction, noise, generator)
            total, terms, grad = _energy_and_grad(energy, params, contacts)
    return OptimisationResult(params, contacts, total, terms, history, accepted / max(1, batch * config.iterations))
