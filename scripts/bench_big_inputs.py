"""Big inputs: read and pack ten million lengths; time and peak memory (a script that prints, not a test).

    python scripts/bench_big_inputs.py [--n 10000000] [--pack-len 8192] [--keep FILE]

Writes ``n`` prompt lengths resampled from the Azure conversation trace (synthetic:
packviz.lengths.azure_resample, seed 0), one per line, then runs each step in a fresh Python
process so that its peak memory (the kernel's maxrss of that process, read with ``os.wait4``)
is its own:

1. ``read``: ``packviz.lengths.read_lengths`` of the file, timed inside the process;
2. ``read + bfd``: the same, then ``packviz.packing.pack(..., "bfd", overlong="split")``;
3. ``end to end``: ``python -m packviz pack --lengths FILE --pack-len C --strategy bfd
   --overlong split --json``, timed from outside (interpreter start, imports, read, pack, print).

Targets (issue 10, on the 2-core development machine): read under 2 s, pack end to end
under 5 s, peak memory under 1 GB.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

READ = """
import json, time
from packviz.lengths import read_lengths
t = time.perf_counter(); x = read_lengths({path!r}); t_read = time.perf_counter() - t
print(json.dumps({{"read_s": t_read, "n": len(x)}}))
"""

PACK = """
import json, time
from packviz.lengths import read_lengths
from packviz.packing import pack
t = time.perf_counter(); x = read_lengths({path!r}); t_read = time.perf_counter() - t
t = time.perf_counter(); lay = pack(x, {pack_len}, "bfd", overlong="split"); t_pack = time.perf_counter() - t
print(json.dumps({{"read_s": t_read, "pack_s": t_pack, "rows": lay.num_rows}}))
"""


def run(cmd: list) -> tuple[str, float, int]:
    """stdout, wall seconds and peak resident bytes of one process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"{cmd[:4]} failed with status {os.waitstatus_to_exitcode(status)}")
    return out, wall, usage.ru_maxrss * 1024  # Linux: KiB


WRITE = """
from packviz.lengths import azure_resample
with open({path!r}, "w") as f:
    f.write("\\n".join(map(str, azure_resample({n}, seed=0).tolist())) + "\\n")
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--pack-len", type=int, default=8192)
    ap.add_argument("--keep", default=None, help="write the lengths file here (and keep it)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or os.path.join(tmp, "lengths.txt")
        # in a child too: a process forked from a big parent starts with the parent's pages in its maxrss
        run([sys.executable, "-c", WRITE.format(path=path, n=args.n)])
        print(f"{args.n:,} lengths resampled from the Azure conversation trace, {os.path.getsize(path) / 1e6:.0f} MB, "
              f"C = {args.pack_len}; python {sys.version.split()[0]}\n")
        py = [sys.executable, "-c"]
        out, _, mem_read = run(py + [READ.format(path=path)])
        read = json.loads(out)
        out, _, mem_pack = run(py + [PACK.format(path=path, pack_len=args.pack_len)])
        packed = json.loads(out)
        out, wall, mem_cli = run([sys.executable, "-m", "packviz", "pack", "--lengths", path, "--pack-len",
                                  str(args.pack_len), "--strategy", "bfd", "--overlong", "split", "--json"])
        cli = json.loads(out)
    print(f"{'step':<34}{'seconds':>9}{'peak memory':>14}{'target':>24}")
    print(f"{'read_lengths':<34}{read['read_s']:>9.2f}{mem_read / 2**20:>11,.0f} MiB{'< 2 s':>24}")
    print(f"{'read_lengths + pack(bfd)':<34}{packed['read_s'] + packed['pack_s']:>9.2f}{mem_pack / 2**20:>11,.0f} MiB"
          f"{'':>24}")
    print(f"{'  of which pack(bfd)':<34}{packed['pack_s']:>9.2f}")
    print(f"{'python -m packviz pack (end to end)':<34}{wall:>9.2f}{mem_cli / 2**20:>11,.0f} MiB"
          f"{'< 5 s, < 1 GB':>24}")
    print(f"\nbfd: {cli['num_rows']:,} rows for a lower bound of {cli['lower_bound_rows']:,} "
          f"({cli['num_rows'] / cli['lower_bound_rows'] - 1:.3%} over), utilisation {cli['utilization']:.2%}")


if __name__ == "__main__":
    main()
