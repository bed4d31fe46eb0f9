"""Structure builders: multi-area, multi-area E/I and random-input circuits.

Each builder is a small validated spec; ``build(generator)`` draws a
:class:`~bionn.circuits.Circuit`: one :class:`~bionn.circuits.Connectivity` each for
the input, the recurrent connections (with a sign per neuron where there are cell
types) and the readout, plus the areas. Recurrent synapses come from the connection
rules of :mod:`bionn.circuits.connect` (:func:`~bionn.circuits.connect.fixed_prob`
block by block), so a builder draws exactly the synapses the rule draws;
``build(generator, layout="sparse")`` keeps them as index arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bionn.circuits.connect import blocks, fixed_prob
from bionn.circuits.connectivity import Circuit, Connectivity
from bionn.constraints import ei_sign

PATHWAYS = ("E->E", "E->I", "I->E", "I->I")


def _density_matrix(density: float | Sequence[Sequence[float]], n_areas: int) -> Tensor:
    if isinstance(density, (int, float)):
        d = torch.full((n_areas, n_areas), float(density))
    else:
        d = torch.as_tensor(density, dtype=torch.float32)
        if d.shape != (n_areas, n_areas):
            raise ValueError(
                f"density must be a number or a {n_areas}x{n_areas} [post area][pre area] "
                f"matrix; got shape {tuple(d.shape)}"
            )
    if (d < 0).any() or (d > 1).any():
        raise ValueError(f"density values must be in [0, 1]; got {d.tolist()}")
    return d


def _check_areas(name: str, areas: Sequence[int], n_areas: int) -> tuple[int, ...]:
    areas = tuple(int(a) for a in areas)
    if not areas or any(a < 0 or a >= n_areas for a in areas):
        raise ValueError(f"{name} must list area indices in 0..{n_areas - 1}; got {list(areas)}")
    return areas


def _check_sizes(area_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in area_sizes)
    if not sizes or any(s <= 0 for s in sizes):
        raise ValueError(f"area_sizes must be positive integers; got {list(area_sizes)}")
    return sizes


def _io(receives: Tensor, n_input: int, n_output: int, readout_from: Tensor,
        ) -> tuple[Connectivity, Connectivity]:
    """Input onto the ``receives`` neurons from every channel, readout from ``readout_from``."""
    input_mask = receives[:, None].expand(-1, n_input)
    readout_mask = readout_from[None, :].expand(n_output, -1)
    return Connectivity(input_mask), Connectivity(readout_mask)


def _area_io(area: Tensor, n_input: int, n_output: int, input_areas: tuple[int, ...],
             readout_from: Tensor) -> tuple[Connectivity, Connectivity]:
    return _io(torch.isin(area, torch.tensor(input_areas)), n_input, n_output, readout_from)


def _block_prob(blocks_p: Tensor, post_sizes: Sequence[int], pre_sizes: Sequence[int],
                diagonal: Sequence[bool], autapses: bool, generator, layout: str,
                sign: Tensor | None = None) -> Connectivity:
    """:func:`fixed_prob` in every block ``(i, j)`` with probability ``blocks_p[i, j]``;
    ``diagonal[i]``: block ``(i, i)`` holds the neurons' own diagonal (autapses)."""
    parts = {}
    for i, n_post in enumerate(post_sizes):
        for j, n_pre in enumerate(pre_sizes):
            p = float(blocks_p[i, j])
            if p > 0:
                own = i == j and diagonal[i]
                parts[(i, j)] = fixed_prob(n_post, n_pre, p, autapses=autapses or not own,
                                           generator=generator)
    return blocks(parts, post_sizes, pre_sizes, sign=sign, layout=layout)


@dataclass(frozen=True)
class MultiArea:
    """Neurons grouped into areas with area-to-area connection densities.

    Args:
        area_sizes: neurons per area.
        density: probability of a synapse from a neuron of area ``j`` to one of
            area ``i``, as a number or a matrix ``density[post_area][pre_area]``.
        n_input, n_output: input channels and readout units.
        input_areas: areas whose neurons receive the input.
        readout_areas: areas the readout reads from (default: the last).
        autapses: keep self-connections.

    Example:
        >>> circuit = MultiArea([40, 30, 30], [[0.5, 0.1, 0], [0.2, 0.5, 0.1], [0, 0.2, 0.5]],
        ...                     n_input=3, n_output=2).build(torch.Generator().manual_seed(0))
        >>> circuit.recurrent.mask.shape, circuit.input_mask.shape, circuit.readout_mask.shape
        (torch.Size([100, 100]), torch.Size([100, 3]), torch.Size([2, 100]))
        >>> circuit.recurrent
        Connectivity(100 post x 100 pre, 2276 synapses, dense)
    """

    area_sizes: Sequence[int]
    density: float | Sequence[Sequence[float]] = 1.0
    n_input: int = 1
    n_output: int = 1
    input_areas: Sequence[int] = (0,)
    readout_areas: Sequence[int] | None = None
    autapses: bool = False

    def __post_init__(self) -> None:
        sizes = _check_sizes(self.area_sizes)
        object.__setattr__(self, "area_sizes", sizes)
        n = len(sizes)
        _density_matrix(self.density, n)
        object.__setattr__(self, "input_areas", _check_areas("input_areas", self.input_areas, n))
        readout = (n - 1,) if self.readout_areas is None else self.readout_areas
        object.__setattr__(self, "readout_areas", _check_areas("readout_areas", readout, n))
        for name in ("n_input", "n_output"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}")

    @property
    def n_neurons(self) -> int:
        return sum(self.area_sizes)

    def area_labels(self) -> Tensor:
        return torch.repeat_interleave(torch.arange(len(self.area_sizes)), torch.tensor(self.area_sizes))

    def build(self, generator: torch.Generator | None = None, layout: str = "dense") -> Circuit:
        """Draw the circuit (recurrent synapses by :func:`~bionn.circuits.connect.fixed_prob`
        per pair of areas, in ``layout``)."""
        area = self.area_labels()
        d = _density_matrix(self.density, len(self.area_sizes))
        rec = _block_prob(d, self.area_sizes, self.area_sizes, [True] * len(self.area_sizes),
                          self.autapses, generator, layout)
        readout_from = torch.isin(area, torch.tensor(self.readout_areas))
        inp, out = _area_io(area, self.n_input, self.n_output, self.input_areas, readout_from)
        return Circuit(rec, inp, out, area, tuple(f"area{i}" for i in range(len(self.area_sizes))))


@dataclass(frozen=True)
class MultiAreaEI(MultiArea):
    """Multi-area circuit with excitatory and inhibitory neurons (Dale's law).

    Within an area all four pathways (E->E, E->I, I->E, I->I) exist at the
    area's own density. Between areas only the ``cross_pathways`` exist
    (default ``("E->E", "E->I")``: long-range projections are excitatory).
    Each area lists its E neurons first, then its I neurons.

    Args:
        e_fraction: fraction of excitatory neurons, one number or one per area.
        cross_pathways: which of ``"E->E", "E->I", "I->E", "I->I"`` cross areas.
        readout_excitatory_only: read out from E neurons only (Song et al. 2016).
        (other arguments as :class:`MultiArea`)

    Example:
        >>> circuit = MultiAreaEI([80, 20], 0.3, n_input=2, n_output=2).build()
        >>> int((circuit.sign > 0).sum())
        80
    """

    e_fraction: float | Sequence[float] = 0.8
    cross_pathways: Sequence[str] = ("E->E", "E->I")
    readout_excitatory_only: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        fr = self.e_fraction
        fr = [float(fr)] * len(self.area_sizes) if isinstance(fr, (int, float)) else [float(f) for f in fr]
        if len(fr) != len(self.area_sizes):
            raise ValueError(
                f"e_fraction must be one number or one per area ({len(self.area_sizes)}); got {fr}"
            )
        for f, size in zip(fr, self.area_sizes, strict=True):
            n_e = round(f * size)
            if not 0.0 < f < 1.0 or n_e in (0, size):
                raise ValueError(
                    f"e_fraction must be in (0, 1) and leave at least one E and one I neuron "
                    f"per area; got {f} for an area of {size}"
                )
        object.__setattr__(self, "e_fraction", tuple(fr))
        bad = [p for p in self.cross_pathways if p not in PATHWAYS]
        if bad:
            raise ValueError(f"cross_pathways must be among {PATHWAYS}; got {bad}")
        object.__setattr__(self, "cross_pathways", tuple(self.cross_pathways))

    def signs(self) -> Tensor:
        parts = []
        for f, size in zip(self.e_fraction, self.area_sizes, strict=True):
            n_e = round(f * size)
            parts += [torch.ones(n_e), -torch.ones(size - n_e)]
        return torch.cat(parts)

    def build(self, generator: torch.Generator | None = None, layout: str = "dense") -> Circuit:
        """Draw the circuit: :func:`~bionn.circuits.connect.fixed_prob` in every
        (area, E/I) x (area, E/I) block, at the density of the two areas where the
        pathway exists (all four within an area, ``cross_pathways`` between areas)."""
        area = self.area_labels()
        sign = self.signs()
        d = _density_matrix(self.density, len(self.area_sizes))
        sizes, block_area, block_e = [], [], []
        for a, (f, size) in enumerate(zip(self.e_fraction, self.area_sizes, strict=True)):
            n_e = round(f * size)
            sizes += [n_e, size - n_e]
            block_area += [a, a]
            block_e += [True, False]
        k = len(sizes)
        p = torch.zeros(k, k)
        for i in range(k):
            for j in range(k):
                pathway = f"{'E' if block_e[j] else 'I'}->{'E' if block_e[i] else 'I'}"
                if block_area[i] == block_area[j] or pathway in self.cross_pathways:
                    p[i, j] = d[block_area[i], block_area[j]]
        rec = _block_prob(p, sizes, sizes, [True] * k, self.autapses, generator, layout, sign)
        readout_from = torch.isin(area, torch.tensor(self.readout_areas))
        if self.readout_excitatory_only:
            readout_from &= sign > 0
        inp, out = _area_io(area, self.n_input, self.n_output, self.input_areas, readout_from)
        names = tuple(f"area{i}" for i in range(len(self.area_sizes)))
        return Circuit(rec, inp, out, area, names)


@dataclass(frozen=True)
class RandomInput:
    """Input to and readout from random subsets of neurons (Wang et al., the
    "hub" model): each input channel reaches the same random subset of
    ``input_fraction * N`` neurons; the readout reads ``readout_fraction * N``
    neurons, of which a fraction ``overlap`` also receive input.

    Args:
        n_neurons, n_input, n_output: sizes.
        input_fraction, readout_fraction: fractions of neurons in (0, 1].
        overlap: fraction of readout neurons that also receive input, in [0, 1].
        density: recurrent connection probability.
        e_fraction: if given, the first ``e_fraction * N`` neurons are E, the rest I.
        autapses: keep self-connections.

    Example:
        >>> c = RandomInput(100, 3, 2, input_fraction=0.3, readout_fraction=0.2, overlap=0.5).build()
        >>> int(c.input_mask[:, 0].sum()), int(c.readout_mask[0].sum())
        (30, 20)
    """

    n_neurons: int
    n_input: int
    n_output: int
    input_fraction: float = 0.2
    readout_fraction: float = 0.2
    overlap: float = 0.0
    density: float = 1.0
    e_fraction: float | None = None
    autapses: bool = False

    def __post_init__(self) -> None:
        for name in ("n_neurons", "n_input", "n_output"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}")
        for name in ("input_fraction", "readout_fraction"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be in (0, 1]; got {v}")
        if not 0.0 <= self.overlap <= 1.0:
            raise ValueError(f"overlap must be in [0, 1]; got {self.overlap}")
        if not 0.0 <= self.density <= 1.0:
            raise ValueError(f"density must be in [0, 1]; got {self.density}")
        k_in, k_out, k_shared = self._counts()
        if k_out - k_shared > self.n_neurons - k_in:
            raise ValueError(
                f"readout_fraction={self.readout_fraction} with overlap={self.overlap} needs "
                f"{k_out - k_shared} readout neurons outside the {k_in} input neurons, but only "
                f"{self.n_neurons - k_in} exist; raise overlap or lower the fractions"
            )
        if k_shared > k_in:
            raise ValueError(
                f"overlap={self.overlap} asks for {k_shared} shared neurons but only {k_in} receive input"
            )

    def _counts(self) -> tuple[int, int, int]:
        k_in = max(1, round(self.input_fraction * self.n_neurons))
        k_out = max(1, round(self.readout_fraction * self.n_neurons))
        return k_in, k_out, round(self.overlap * k_out)

    def build(self, generator: torch.Generator | None = None, layout: str = "dense") -> Circuit:
        """Draw the input and readout subsets, then the recurrent synapses
        (:func:`~bionn.circuits.connect.fixed_prob` at ``density``)."""
        n = self.n_neurons
        k_in, k_out, k_shared = self._counts()
        perm = torch.randperm(n, generator=generator)
        input_units = perm[:k_in]
        shared = input_units[torch.randperm(k_in, generator=generator)[:k_shared]]
        others = perm[k_in:][: k_out - k_shared]
        readout_units = torch.cat([shared, others])
        receives = torch.zeros(n, dtype=torch.bool)
        receives[input_units] = True
        read = torch.zeros(n, dtype=torch.bool)
        read[readout_units] = True
        inp, out = _io(receives, self.n_input, self.n_output, read)
        sign = None if self.e_fraction is None else ei_sign(n, self.e_fraction)
        rec = fixed_prob(n, n, self.density, autapses=self.autapses, generator=generator,
                         layout=layout).with_sign(sign)
        return Circuit(rec, inp, out)
