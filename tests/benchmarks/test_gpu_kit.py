"""The GPU kit (benchmarks/gpu/kit.py) at toy size on the CPU: prepared from the session's tiny
demo, run with the packages the GPU machine lacks made unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "benchmarks" / "gpu" / "kit.py"


def kit(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    import torch

    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "TMPDIR": str(tmp)}
    return subprocess.run([sys.executable, str(KIT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


def cache_files(cache: Path) -> list[Path]:
    return sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file())


@pytest.mark.slow
def test_the_gpu_kit_runs_dry_without_what_the_gpu_machine_lacks(tiny_demo, tmp_path):
    root, _ = tiny_demo
    folder, out = tmp_path / "kit", tmp_path / "out"
    prepared = kit("prepare", "--dry", "--kit", str(folder), "--real", str(root / "demo"),
                   "--grasps", str(root / "demo" / "grasps" / "round-0"), tmp=tmp_path / "tmp")
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    assert {"conditions", "oracle", "real"} <= {p.name for p in (folder / "inputs").iterdir()}
    assert any((folder / "cache").rglob("*.json"))  # the resting poses travel: the run has no pybullet
    cached = cache_files(folder / "cache")
    from pipeline.objects import load_object_library

    left = load_object_library("builtin")["tomato_soup_can"].mesh_hash  # a demo object the run grasps nothing on
    assert not [p for p in cached if p.name.startswith((left, "tomato_soup_can"))]  # its 10 MiB SDF stays here
    ran = kit("run", "--dry", "--kit", str(folder), "--out", str(out), tmp=tmp_path / "tmp")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert not list((tmp_path / "tmp").glob("gpu-kit-*"))  # its working folder went when the run ended
    # The run built nothing but the reconstructors' mesh hierarchy (1 s to build, 6 MiB to carry): everything
    # else it read had travelled.
    assert [p for p in cache_files(folder / "cache") if p.parts[0] != "mesh_hierarchy"] == cached
    results = json.loads((out / "results.json").read_text())
    assert all(row["train_images_per_s"] > 0 and row["sample_images_per_s"] > 0 for row in results["ddpm_throughput"])
    assert {row["model"] for row in results["recon_throughput"]} >= {"mobrecon", "handoccnet"}
    assert all(row["hands_per_s"] > 0 for row in results["grasp_throughput"])
    quality = results["ddpm_quality"]
    assert quality["frechet_distance"] > 0 and quality["frechet_distance_real_floor"] is not None
    table = results["boost"]["table"]
    assert set(table) == {"real_only", "full", "plain_renders", "oracle"}
    assert all(len(table[arm]["demo_s0_test"]["rr_change_ci95"]) == 2 for arm in ("full", "plain_renders", "oracle"))
    assert "| real only |" in (out / "results.md").read_text() and (out / "boost_report.md").exists()
    assert len([p for p in out.iterdir() if p.is_file()]) <= 8  # what comes back from the GPU machine
