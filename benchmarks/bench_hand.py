"""Hand layer benchmark: forward pass per batch size, builtin build, exports.

Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_hand.py``. Baselines measured in
the same run: the raw smplx MANO layer (our wrapper's overhead), and loading the cached
builtin hand (the cost a user pays after the first build).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def timed(func, repeat: int) -> float:
    func()
    start = time.perf_counter()
    for _ in range(repeat):
        func()
    return (time.perf_counter() - start) / repeat * 1000.0


def main() -> None:
    os.environ.setdefault("HANDBOOSTER_CACHE", tempfile.mkdtemp(prefix="hb-bench-"))
    from pipeline.hand import load_hand_model
    from pipeline.hand.builtin import build_builtin_arrays, builtin_arrays
    from pipeline.hand.export import export_hand
    from renderers.preview import hand_picture

    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    start = time.perf_counter()
    build_builtin_arrays()
    cold = (time.perf_counter() - start) * 1000
    builtin_arrays()  # writes the cache
    rows.append(("builtin build (cold)", "", cold, timed(builtin_arrays, 5), "cache load"))

    model = load_hand_model("builtin")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        model = model.to(device)
        for batch in (1, 64, 1024):
            pose = torch.cat([torch.zeros(batch, 3), model.anatomy.sample(batch, 0).float()], 1).to(device)
            betas = torch.zeros(batch, 10, device=device)

            def ours():
                with torch.no_grad():
                    model(pose, betas)
                if device == "cuda":
                    torch.cuda.synchronize()

            def raw():
                with torch.no_grad():
                    model.mano(betas=betas, global_orient=pose[:, :3], hand_pose=pose[:, 3:])
                if device == "cuda":
                    torch.cuda.synchronize()

            repeat = 50 if batch < 1024 else 10
            rows.append((f"forward {device}", batch, timed(ours, repeat), timed(raw, repeat), "raw smplx"))

    out = Path(tempfile.mkdtemp())
    obj_ms = timed(lambda: export_hand("builtin", "right", "fist", 0, out / "h.obj"), 3)
    png_ms = timed(lambda: export_hand("builtin", "right", "fist", 0, out / "h.png", picture=hand_picture), 3)
    rows.append(("export fist .obj", "", obj_ms, png_ms, "export .png"))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")
    print(f"{'case':24} {'batch':>6} {'ms':>10} {'baseline ms':>12} {'ratio':>7}  baseline")
    for name, batch, ms, base, base_name in rows:
        print(f"{name:24} {batch!s:>6} {ms:10.2f} {base:12.2f} {ms / base:7.2f}  {base_name}")


if __name__ == "__main__":
    main()
