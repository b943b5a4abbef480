#!/usr/bin/python3
"""libtorch's channels-last batch norm, forward and backward, per element, by channel count.

Why: the adapting designer (search/adapt.hpp, round_width) puts widths on the target's channel
tile when one is near. Off multiples of 16 channels (two AVX2 vectors of 8 floats; Debian's
torch 1.13 dispatches to AVX2 on an AVX-512 CPU) this batch norm ran several times slower per
element here, and with it the training of a lineage
whose widths were 28 and 56 (docs/adapt.md, "Widths on the channel tile").

Run with Debian's torch (the build lamda links): /usr/bin/python3 bench/torch_batchnorm_widths.py
Options: --threads N (default 2, as lamda's searches train), --hw H (the map's side, default 14),
--batch B (default 128, lamda train's).
"""
import argparse
import ctypes
import time

import torch


def per_element_ns(fn, elements, repeats):
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(3):  # the best of three rounds: the machine is shared
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best * 1e9 / elements


def malloc_as_lamda():
    """glibc's malloc set as lamda's trainer sets it (train/trainer.hpp): without it, every step's
    large tensors came from fresh pages and page faults took most of the time, differently per
    size (4 to 15 ns per element here), hiding what the kernels cost."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 1 << 30)
    libc.mallopt(m_top_pad, 64 << 20)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hw", type=int, default=14)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--channels", default="16,24,28,32,40,48,56,64,96,112,176")
    a = ap.parse_args()
    malloc_as_lamda()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    capability = next((line.split(":", 1)[1].strip() for line in torch.__config__.show().splitlines()
                       if "CPU capability usage" in line), "unknown")
    print(f"torch {torch.__version__}, CPU capability {capability}, "
          f"{a.threads} threads, batch {a.batch}, {a.hw}x{a.hw} maps")
    print("| channels | channels-last: ns per element | NCHW: ns per element |")
    print("|---:|---:|---:|")
    for c in (int(v) for v in a.channels.split(",")):
        row = []
        for fmt in (torch.channels_last, torch.contiguous_format):
            bn = torch.nn.BatchNorm2d(c)
            x = torch.randn(a.batch, c, a.hw, a.hw).to(memory_format=fmt).requires_grad_()
            g = torch.randn(a.batch, c, a.hw, a.hw).to(memory_format=fmt)
            row.append(per_element_ns(lambda: bn(x).backward(g), x.numel(), a.repeats))
        print(f"| {c} | {row[0]:.2f} | {row[1]:.2f} |")


if __name__ == "__main__":
    main()
