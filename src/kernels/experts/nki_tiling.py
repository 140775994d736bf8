"""How the NKI expert kernels cut one rank's expert weights into tiles, and what that costs on chip.

Shared by the variants' launchers (which pass the tile sizes to the kernels) and their shape checks (which
run at config time, so this module imports no NKI). Hardware numbers are trn2's, the smaller target.
`ExpertTiling` / `problems` describe selective_v1's whole-expert loads, `PairTiling` / `pair_problems`
grouped_v2's expert pairs on the physical cores of a logical core.
"""
from __future__ import annotations

from dataclasses import dataclass

from kernels.experts.selection import uses_selective_loading
from kernels.types import LayerShapes

PARTITIONS = 128  # nl.tile_size.pmax: rows of a K tile, and of an output chunk of hidden
MAX_STATIONARY = 128  # nl.tile_size.gemm_stationary_fmax: columns of an intermediate chunk
PSUM_BANK_BYTES = 2048  # one accumulation tile per projection must fit one bank
SBUF_BYTES = 212984  # usable bytes per partition on trn2 (trn3 has 245752)


def equal_chunk(total: int, largest: int) -> int | None:
    """The size of the fewest equal chunks of at most `largest` that cover `total` (None if they do not divide it)."""
    count = -(-total // largest)
    return total // count if total % count == 0 else None


@dataclass(frozen=True)
class ExpertTiling:
    """Tile sizes of one call: x [tokens, hidden] through top_k experts with `intermediate` columns per rank.

    Gate/up weights stream in loads of `k_tiles_per_load` 128-row tiles of hidden, down weights in loads of
    `i_chunks_per_load` chunks of `i_chunk` intermediate rows, through `bufs` SBUF buffers per stream.
    """

    tokens: int
    top_k: int
    hidden: int
    intermediate: int
    i_chunk: int
    k_tiles_per_load: int
    i_chunks_per_load: int
    bufs: int
    dtype_bytes: int = 2

    @property
    def k_tiles(self) -> int:
        """128-row tiles of the gate/up contraction over hidden."""
        return self.hidden // PARTITIONS

    @property
    def i_chunks(self) -> int:
        return self.intermediate // self.i_chunk

    @property
    def h_chunks(self) -> int:
        """128-row output chunks of the down projection (as many as k_tiles, another role)."""
        return self.hidden // PARTITIONS

    @property
    def gate_up_loads(self) -> int:
        return -(-self.k_tiles // self.k_tiles_per_load)

    @property
    def down_loads(self) -> int:
        return -(-self.i_chunks // self.i_chunks_per_load)

    def psum_bytes(self) -> dict[str, int]:
        """fp32 bytes per partition of each projection's partial-sum tile [rows, groups, loads]."""
        return {"gate/up": 4 * 2 * self.i_chunks * self.gate_up_loads,
                "down": 4 * self.h_chunks * self.down_loads}

    def sbuf_bytes(self) -> int:
        """An upper bound of the kernels' live SBUF bytes per partition: weight buffers, the tokens, expert ids
        and affinities, per-expert outputs or the fp32 accumulator, and the scratch tiles of two experts."""
        d, slots = self.dtype_bytes, self.tokens * self.top_k
        weights = self.bufs * d * (self.k_tiles_per_load * 2 * self.intermediate + self.i_chunks_per_load * self.hidden)
        tokens = d * self.k_tiles * self.tokens
        routing = slots * (4 + d + 4)  # int32 ids, affinities and their fp32 copy
        outputs = self.h_chunks * (slots * d + self.tokens * (4 + d))
        scratch = 2 * d * (4 * self.i_chunks + 2 * self.h_chunks)  # gate/up, silu, h; expert output, scaled
        return weights + tokens + routing + outputs + scratch


def tiling(shapes: LayerShapes, i_chunk: int, k_tiles_per_load: int | None = None,
           i_chunks_per_load: int | None = None, bufs: int = 1) -> ExpertTiling:
    """The decode tiling at `shapes`; loads never exceed one expert, and `None` takes a whole expert at once."""
    k_tiles, i_chunks = shapes.hidden // PARTITIONS, shapes.intermediate // i_chunk
    return ExpertTiling(
        tokens=shapes.batch, top_k=shapes.top_k, hidden=shapes.hidden, intermediate=shapes.intermediate,
        i_chunk=i_chunk, k_tiles_per_load=min(k_tiles_per_load or k_tiles, k_tiles),
        i_chunks_per_load=min(i_chunks_per_load or i_chunks, i_chunks), bufs=bufs,
        dtype_bytes=shapes.dtype.itemsize,
    )


def problems(shapes: LayerShapes, intermediate_tile: int, k_tiles_per_load: int | None = None,
             i_chunks_per_load: int | None = None, bufs: int = 1) -> list[str]:
    """Why the decode expert kernels cannot serve `shapes` with these tile sizes (empty when they can)."""
    found = []
    if not uses_selective_loading(shapes.batch, shapes.top_k, shapes.experts):
        found.append(
            f"decode batch {shapes.batch} x top-{shapes.top_k} reaches {shapes.experts} experts, where the baseline "
            f"switches from selective loading to all-expert accumulation (batch * top_k < experts is required)"
        )
    if shapes.hidden % PARTITIONS:
        found.append(f"hidden size {shapes.hidden} is not a multiple of {PARTITIONS} partitions")
    for knob, value in (("k_tiles_per_dma", k_tiles_per_load), ("i_chunks_per_dma", i_chunks_per_load),
                        ("bufs", bufs)):
        if value is not None and value < 1:
            found.append(f"{knob}={value} must be at least 1")
    if not 1 <= intermediate_tile <= MAX_STATIONARY:
        found.append(f"intermediate_tile={intermediate_tile} must be in 1..{MAX_STATIONARY} (matmul stationary width)")
    elif equal_chunk(shapes.intermediate, intermediate_tile) is None:
        count = -(-shapes.intermediate // intermediate_tile)
        found.append(f"intermediate size per rank {shapes.intermediate} does not split into {count} equal chunks "
                     f"of at most intermediate_tile={intermediate_tile} rows")
    if found:
        return found
    plan = tiling(shapes, equal_chunk(shapes.intermediate, intermediate_tile), k_tiles_per_load, i_chunks_per_load,
                  bufs)
    for projection, used in plan.psum_bytes().items():
        if used > PSUM_BANK_BYTES:
            found.append(f"{projection} partial sums need {used} bytes per partition, more than one "
                         f"{PSUM_BANK_BYTES}-byte PSUM bank (load more rows per DMA)")
    if plan.sbuf_bytes() > SBUF_BYTES:
        found.append(f"SBUF budget: about {plan.sbuf_bytes()} bytes per partition needed, {SBUF_BYTES} available "
                     f"on trn2 (fewer buffers or smaller loads)")
    return found


# --- grouped_v2: expert pairs on both physical cores ------------------------------------------------------

HALF = PARTITIONS // 2  # partitions of one expert of a pair in the down layout
PSUM_BANKS = 8


@dataclass(frozen=True)
class PairTiling:
    """grouped_v2's plan of one call: T tokens' k slots in pairs of experts, dealt out to `cores` physical
    cores; gate/up weights in loads of `k_tiles_per_load` 128-row tiles of both experts, down weights in
    loads of `chunks_per_load` chunks (one 64-row chunk = one row per partition of each expert), the last
    down load of each core `last_chunks` chunks; `gate_up_bufs` / `down_bufs` loads in flight."""

    tokens: int
    top_k: int
    hidden: int
    intermediate: int
    cores: int
    k_tiles_per_load: int
    chunks_per_load: int
    last_chunks: int
    gate_up_bufs: int
    down_bufs: int
    dtype_bytes: int = 2

    @property
    def k_tiles(self) -> int:
        return self.hidden // PARTITIONS

    @property
    def chunks(self) -> int:
        """Intermediate rows per partition of one expert in the down layout (I / 64)."""
        return self.intermediate // HALF

    @property
    def pairs(self) -> int:
        return self.tokens * self.top_k // 2

    def pairs_per_core(self) -> int:
        return -(-self.pairs // self.cores)

    def gate_up_loads(self) -> int:
        return -(-self.k_tiles // self.k_tiles_per_load)

    def down_loads(self, last_pair: bool = True) -> int:
        tail = self.last_chunks if last_pair and 0 < self.last_chunks < self.chunks else 0
        return -(-(self.chunks - tail) // self.chunks_per_load) + (1 if tail else 0)

    def loads_per_core(self) -> dict[str, int]:
        """Loads of each kind a core issues (the busiest core)."""
        pairs = self.pairs_per_core()
        return {"gate_up": pairs * self.gate_up_loads(),
                "down": (pairs - 1) * self.down_loads(False) + self.down_loads(True)}

    def psum_bytes(self) -> dict[str, int]:
        """fp32 bytes per partition of one pair's partial-sum tiles."""
        return {"gate/up": 4 * 2 * self.chunks * self.gate_up_loads(),
                "down": 4 * 2 * (self.hidden // PARTITIONS) * self.down_loads(True)}

    def sbuf_bytes(self) -> int:
        """An upper bound of live SBUF bytes per partition: the weight rings, the tokens, ids and affinities,
        the scaled outputs of all of a core's pairs, and the scratch tiles of two pairs."""
        d, slots, blocks = self.dtype_bytes, self.tokens * self.top_k, self.hidden // PARTITIONS
        rings = d * (self.gate_up_bufs * 2 * self.k_tiles_per_load * 2 * self.intermediate
                     + self.down_bufs * self.chunks_per_load * self.hidden)
        inputs = d * self.tokens * (self.k_tiles + 3 * self.hidden // HALF) + slots * (4 + d)  # x, its wide form
        outputs = self.pairs_per_core() * 2 * blocks * d
        scratch = 2 * d * (2 * self.chunks + self.chunks + 2 * self.chunks + 3 * 2 * blocks)
        return rings + inputs + outputs + scratch


def pair_tiling(tokens: int, top_k: int, hidden: int, intermediate: int, dtype_bytes: int, cores: int,
                k_tiles_per_load: int | None, chunks_per_load: int | None, last_chunks: int,
                bufs: int | None) -> PairTiling:
    """The plan of a call. Knobs left at `None` are chosen to fit the SBUF budget: `bufs=None` gives each
    ring as many buffers as a core has loads of its kind (every load issued at once), fewer (down to 2) if
    that does not fit; loads left at `None` take a whole expert, halved until two buffers fit. The last
    down load is at most one load."""
    k_tiles, chunks = hidden // PARTITIONS, intermediate // HALF

    def make(k_load: int, c_load: int, gate_up_bufs: int, down_bufs: int) -> PairTiling:
        return PairTiling(tokens=tokens, top_k=top_k, hidden=hidden, intermediate=intermediate, cores=cores,
                          k_tiles_per_load=k_load, chunks_per_load=c_load, last_chunks=min(last_chunks, c_load),
                          gate_up_bufs=gate_up_bufs, down_bufs=down_bufs, dtype_bytes=dtype_bytes)

    k_load = max(1, min(k_tiles_per_load or k_tiles, k_tiles))
    c_load = max(1, min(chunks_per_load or chunks, chunks))
    while True:
        if bufs is not None:
            plan = make(k_load, c_load, bufs, bufs)
        else:
            wanted = make(k_load, c_load, 1, 1).loads_per_core()
            plan = make(k_load, c_load, max(wanted["gate_up"], 1), max(wanted["down"], 1))
            while plan.sbuf_bytes() > SBUF_BYTES and max(plan.gate_up_bufs, plan.down_bufs) > 2:
                plan = make(k_load, c_load, max(2, plan.gate_up_bufs - 1), max(2, plan.down_bufs - 1))
        shrink_k = k_tiles_per_load is None and plan.k_tiles_per_load > 1
        shrink_c = chunks_per_load is None and plan.chunks_per_load > 1
        if plan.sbuf_bytes() <= SBUF_BYTES or not (shrink_k or shrink_c):
            return plan
        gate_up_bytes = plan.k_tiles_per_load * 2 * 2 * intermediate
        if shrink_k and (not shrink_c or gate_up_bytes >= plan.chunks_per_load * hidden):
            k_load = -(-k_load // 2)
        else:
            c_load = -(-c_load // 2)


def pair_problems(shapes: LayerShapes, cores: int, k_tiles_per_load: int | None, chunks_per_load: int | None,
                  last_chunks: int, bufs: int | None) -> list[str]:
    """Why grouped_v2 cannot serve `shapes` with these knobs (empty when it can)."""
    found = []
    if not uses_selective_loading(shapes.batch, shapes.top_k, shapes.experts):
        found.append(
            f"decode batch {shapes.batch} x top-{shapes.top_k} reaches {shapes.experts} experts, where the baseline "
            f"switches from selective loading to all-expert accumulation (batch * top_k < experts is required)"
        )
    if shapes.hidden % PARTITIONS:
        found.append(f"hidden size {shapes.hidden} is not a multiple of {PARTITIONS} partitions")
    if shapes.intermediate % HALF:
        found.append(f"intermediate size per rank {shapes.intermediate} is not a multiple of {HALF} (experts are "
                     f"paired on two halves of the {PARTITIONS} partitions)")
    if shapes.top_k % 2:
        found.append(f"top_k={shapes.top_k} is odd: a token's experts are computed in pairs")
    if shapes.top_k > 16:
        found.append(f"top_k={shapes.top_k}: one dma_compute sums at most 16 expert outputs")
    if cores not in (1, 2):
        found.append(f"cores={cores} must be 1 or 2 (the physical cores of a logical core at LNC=1 or 2)")
    for knob, value in (("k_tiles_per_dma", k_tiles_per_load), ("i_chunks_per_dma", chunks_per_load),
                        ("bufs", bufs)):
        if value is not None and value < 1:
            found.append(f"{knob}={value} must be at least 1")
    if last_chunks < 0:
        found.append(f"last_i_chunks={last_chunks} must be at least 0")
    if found:
        return found
    plan = pair_tiling(shapes.batch, shapes.top_k, shapes.hidden, shapes.intermediate, shapes.dtype.itemsize, cores,
                       k_tiles_per_load, chunks_per_load, last_chunks, bufs)
    for projection, used in plan.psum_bytes().items():
        if used > PSUM_BANK_BYTES:
            found.append(f"{projection} partial sums need {used} bytes per partition, more than one "
                         f"{PSUM_BANK_BYTES}-byte PSUM bank (load more rows per DMA)")
    if plan.sbuf_bytes() > SBUF_BYTES:
        found.append(f"SBUF budget: about {plan.sbuf_bytes()} bytes per partition needed, {SBUF_BYTES} available "
                     f"on trn2 (fewer buffers or smaller loads)")
    return found
