"""Compile programs for a target and report per-device memory, fit, FLOPs and collectives.

peak = argument + output - alias + temp (XLA's buffer assignment for the target; donated inputs
alias their outputs) + resident (arrays alive beside the arguments, e.g. the train state during
a GRPO rollout). Collectives are read from the optimised HLO: every all-gather, all-reduce,
reduce-scatter, all-to-all and collective-permute instruction with the bytes of its result per
device, each instruction counted once (one inside a layer loop runs once per iteration).
"""

from __future__ import annotations

import collections
import dataclasses
import re
import time

GiB = 2**30

_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1, "s16": 2, "u16": 2, "f16": 2,
                "bf16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8}
_ARRAY = re.compile(r"\b(" + "|".join(_DTYPE_BYTES) + r")\[([\d,]*)\]")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.+?)\s+([a-z][\w\-]*)\(")
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")


def array_bytes(text: str) -> list[int]:
    """Byte sizes of every array shape written in ``text`` (an HLO result type)."""
    out = []
    for dtype, dims in _ARRAY.findall(text):
        n = 1
        for d in filter(None, dims.split(",")):
            n *= int(d)
        out.append(n * _DTYPE_BYTES[dtype])
    return out


def hlo_instructions(hlo: str):
    """(name, opcode, result bytes, op_name metadata) of every instruction of an HLO module text."""
    for line in hlo.splitlines():
        m = _INSTR.match(line)
        if not m:
            continue
        name, result, op = m.groups()
        sizes = array_bytes(result)
        meta = re.search(r'op_name="([^"]*)"', line)
        yield name, op, sizes, meta.group(1) if meta else ""


def collectives(hlo: str) -> dict[str, dict[str, int]]:
    """kind -> {"count", "bytes"}; an async ``-start`` counts once with its largest result array
    (the gathered / reduced buffer), its ``-done`` not at all."""
    out: dict[str, dict[str, int]] = collections.defaultdict(lambda: {"count": 0, "bytes": 0})
    for _, op, sizes, _ in hlo_instructions(hlo):
        kind = op[:-len("-start")] if op.endswith("-start") else op
        if kind in COLLECTIVES and sizes:
            out[kind]["count"] += 1
            out[kind]["bytes"] += max(sizes)
    return dict(out)


def largest_buffers(hlo: str, n: int = 8) -> list[dict]:
    """The n instructions with the largest results (candidates for what fills memory)."""
    rows = [(max(sizes), name, op, meta) for name, op, sizes, meta in hlo_instructions(hlo) if sizes]
    rows.sort(reverse=True)
    return [{"bytes": b, "instruction": name, "op": op, "source": meta} for b, name, op, meta in rows[:n]]


@dataclasses.dataclass
class Result:
    name: str
    argument_bytes: int
    output_bytes: int
    alias_bytes: int
    temp_bytes: int
    resident_bytes: int  # alive beside the arguments (Program.resident)
    compile_seconds: float
    flops: float
    collectives: dict
    largest: list

    @property
    def peak_bytes(self) -> int:
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.resident_bytes

    def as_dict(self, capacity: int, min_headroom: float) -> dict:
        return {"name": self.name, "argument_bytes": self.argument_bytes, "output_bytes": self.output_bytes,
                "alias_bytes": self.alias_bytes, "temp_bytes": self.temp_bytes,
                "resident_bytes": self.resident_bytes, "peak_bytes": self.peak_bytes,
                "capacity_bytes": capacity, "headroom": headroom(self.peak_bytes, capacity),
                "fits": fits(self.peak_bytes, capacity, min_headroom), "compile_seconds": self.compile_seconds,
                "flops": self.flops, "collectives": self.collectives}


def headroom(peak: int, capacity: int) -> float:
    return 1.0 - peak / capacity


def fits(peak: int, capacity: int, min_headroom: float) -> bool:
    return headroom(peak, capacity) >= min_headroom


def compile_program(program) -> Result:
    from ladder_jax.aot.programs import per_device_bytes

    t0 = time.perf_counter()
    compiled = program.lower().compile()
    seconds = time.perf_counter() - t0
    program.compiled = compiled
    mem = compiled.memory_analysis()
    hlo = compiled.as_text()
    return Result(program.name, int(mem.argument_size_in_bytes), int(mem.output_size_in_bytes),
                  int(mem.alias_size_in_bytes), int(mem.temp_size_in_bytes), per_device_bytes(program.resident),
                  seconds, float(program.flops), collectives(hlo), largest_buffers(hlo))


def table(results: list[Result], capacity: int, min_headroom: float) -> str:
    """A fixed-width table, one row per compiled function (GiB per device)."""
    head = (f"{'function':<44} {'argument':>9} {'output':>8} {'alias':>8} {'temp':>8} {'resident':>8} {'peak':>8} "
            f"{'capacity':>9} {'headroom':>8} {'fits':>5} {'compile s':>9} {'TFLOP':>9}")
    lines = [head, "-" * len(head)]
    for r in results:
        g = lambda b: f"{b / GiB:.2f}"
        lines.append(f"{r.name[:44]:<44} {g(r.argument_bytes):>9} {g(r.output_bytes):>8} {g(r.alias_bytes):>8} "
                     f"{g(r.temp_bytes):>8} {g(r.resident_bytes):>8} {g(r.peak_bytes):>8} {g(capacity):>9} "
                     f"{headroom(r.peak_bytes, capacity):>8.1%} {str(fits(r.peak_bytes, capacity, min_headroom)):>5} "
                     f"{r.compile_seconds:>9.1f} {r.flops / 1e12:>9.2f}")
        coll = ", ".join(f"{k} x{v['count']} {v['bytes'] / GiB:.2f} GiB" for k, v in sorted(r.collectives.items()))
        lines.append(f"    collectives: {coll or 'none'}")
    return "\n".join(lines)
