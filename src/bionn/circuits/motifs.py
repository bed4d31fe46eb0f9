"""Microcircuit motifs: named, learnable scaffolds for local circuits.

Each motif is a :class:`~bionn.circuits.celltypes.CellTypeTable` (cell types and
the allowed type-to-type connections with initial strengths). It builds a
non-spatial rate network (:meth:`bionn.rate.CTRNN.from_cell_types`)
or a spatially embedded area (:class:`bionn.rate.SpatialArea` takes the table); the weights are
learned, the pattern (which pairs connect, and their signs) is kept by
construction. List them with :func:`list_motifs`, get a fresh table with
:func:`motif`, inspect it (``print(t)``, ``t.to_markdown()``,
``bionn.viz.plot_cell_type_table(t, path)``, ``bionn.viz.plot_motif(t, path)``) and
modify it (``t.connect``, ``t.disconnect``,
``t.update``, ``t.update_type``) before building.

Strengths and time constants are illustrative starting values that follow the
qualitative pattern of each source (strong vs weak vs absent), not fitted data.

Example:
    >>> list_motifs()
    ['E-I', 'feedforward-inhibition', 'disinhibition', 'E-PV-SST-VIP']
    >>> t = motif("E-PV-SST-VIP")
    >>> t.connection("SST", "SST") is None, t.connection("VIP", "SST") is not None
    (True, True)
    >>> t = t.update("VIP", "SST", strength=2.0).disconnect("SST", "VIP")
    >>> t.connection("VIP", "SST").strength
    2.0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bionn.circuits.celltypes import CellType, CellTypeTable, TypeConnection

__all__ = ["MOTIFS", "Motif", "motif", "list_motifs"]


@dataclass(frozen=True)
class Motif:
    """A registered motif: its builder, a one-line description and its sources."""

    name: str
    build: Callable[..., CellTypeTable]
    description: str
    references: tuple[str, ...]


C = TypeConnection


def _ei(channels: int = 4) -> CellTypeTable:
    """Recurrent excitation with feedback inhibition.

    E excites E and I; I inhibits E and I (all four pathways), the
    excitatory-inhibitory network of Wilson & Cowan (1972, Biophys J 12:1-24) and of
    balanced-state models (van Vreeswijk & Sompolinsky 1996, Science 274:1724-1726).
    Four E per I (``channels`` E, ``channels // 4`` I, at least 1).
    """
    return CellTypeTable(
        [CellType("E", count=channels, sign=1, tau=20.0),
         CellType("I", count=max(1, channels // 4), sign=-1, tau=10.0)],
        [C("E", "E", strength=0.5, extent=5), C("E", "I", strength=1.0, extent=5),
         C("I", "E", strength=1.0, extent=3), C("I", "I", strength=0.5, extent=3)],
        inputs=("E",), outputs=("E",), name="E-I",
        description="Recurrent E with feedback inhibition (Wilson & Cowan 1972).",
    )


def _ffi(channels: int = 4) -> CellTypeTable:
    """Feedforward inhibition.

    The afferent input excites both E and PV cells; PV cells inhibit E, so
    excitation is followed within a few ms by inhibition that sharpens the time
    window of integration (Pouille & Scanziani 2001, Science 293:1159-1163;
    Gabernet et al. 2005, Neuron 48:315-327). No E -> PV recurrence (that would be
    feedback inhibition; add it with ``t.connect("E", "PV")``).
    """
    return CellTypeTable(
        [CellType("E", count=channels, sign=1, tau=20.0),
         CellType("PV", count=max(1, channels // 4), sign=-1, tau=10.0)],
        [C("E", "E", strength=0.5, extent=5), C("PV", "E", strength=1.0, extent=3)],
        inputs=("E", "PV"), outputs=("E",), name="feedforward-inhibition",
        description="Input drives E and PV; PV inhibits E (Pouille & Scanziani 2001).",
    )


def _disinhibition(channels: int = 4) -> CellTypeTable:
    """Disinhibition through VIP -> SST -> E.

    SST cells inhibit E cells; VIP cells inhibit SST cells, so driving VIP releases
    E from inhibition (Pi et al. 2013, Nature 503:521-524; Lee et al. 2013, Nat
    Neurosci 16:1662-1670; a layer-1 form in Letzkus et al. 2011, Nature
    480:331-335). VIP receives the input (top-down / long-range in those studies)
    together with E; E excites SST (Pfeffer et al. 2013).
    """
    return CellTypeTable(
        [CellType("E", count=channels, sign=1, tau=20.0),
         CellType("SST", count=max(1, channels // 4), sign=-1, tau=20.0),
         CellType("VIP", count=max(1, channels // 4), sign=-1, tau=15.0)],
        [C("E", "E", strength=0.5, extent=5), C("E", "SST", strength=1.0, extent=5),
         C("SST", "E", strength=1.0, extent=5), C("VIP", "SST", strength=1.0, extent=3)],
        inputs=("E", "VIP"), outputs=("E",), name="disinhibition",
        description="VIP inhibits SST, which inhibits E (Pi et al. 2013; Lee et al. 2013).",
    )


def _canonical(channels: int = 4) -> CellTypeTable:
    """The canonical cortical E-PV-SST-VIP circuit.

    Inhibitory connections follow Pfeffer, Xue, He, Huang & Scanziani (2013),
    "Inhibition of inhibition in visual cortex: the logic of connections between
    molecularly distinct interneurons", Nat Neurosci 16:1068-1076:

    - PV inhibits E and PV (strongly); PV -> SST and PV -> VIP are weak and left out.
    - SST inhibits E, PV and VIP, but not SST (SST cells avoid each other).
    - VIP inhibits SST (preferentially); its weak outputs to PV and E are left out.

    E excites E, PV, SST and VIP (local excitatory input to all three interneuron
    classes: Jiang et al. 2015, Science 350:aac9462; Campagnola et al. 2022,
    Science 375:eabj5861). The input reaches E and PV (thalamocortical feedforward
    drive; Pouille & Scanziani 2001) and VIP (long-range/top-down input; Lee et al.
    2013, Nat Neurosci 16:1662-1670). PV cells are fast (tau 10 ms).
    Add weak connections with ``t.connect("VIP", "PV", strength=0.2)``.
    """
    k = max(1, channels // 4)
    return CellTypeTable(
        [CellType("E", count=channels, sign=1, tau=20.0),
         CellType("PV", count=k, sign=-1, tau=10.0),
         CellType("SST", count=k, sign=-1, tau=20.0),
         CellType("VIP", count=k, sign=-1, tau=15.0)],
        [C("E", "E", strength=0.5, extent=5), C("E", "PV", strength=1.0, extent=5),
         C("E", "SST", strength=1.0, extent=5), C("E", "VIP", strength=0.5, extent=5),
         C("PV", "E", strength=1.0, extent=3), C("PV", "PV", strength=0.5, extent=3),
         C("SST", "E", strength=0.8, extent=5), C("SST", "PV", strength=0.5, extent=5),
         C("SST", "VIP", strength=0.5, extent=5),
         C("VIP", "SST", strength=1.0, extent=3)],
        inputs=("E", "PV", "VIP"), outputs=("E",), name="E-PV-SST-VIP",
        description="Canonical cortical circuit, interneuron wiring of Pfeffer et al. 2013.",
    )


MOTIFS: dict[str, Motif] = {
    "E-I": Motif("E-I", _ei, "recurrent excitation with feedback inhibition",
                 ("Wilson & Cowan 1972, Biophys J 12:1-24",
                  "van Vreeswijk & Sompolinsky 1996, Science 274:1724-1726")),
    "feedforward-inhibition": Motif(
        "feedforward-inhibition", _ffi, "input drives E and PV; PV inhibits E",
        ("Pouille & Scanziani 2001, Science 293:1159-1163",
         "Gabernet et al. 2005, Neuron 48:315-327")),
    "disinhibition": Motif(
        "disinhibition", _disinhibition, "VIP inhibits SST, releasing E from SST inhibition",
        ("Pi et al. 2013, Nature 503:521-524", "Lee et al. 2013, Nat Neurosci 16:1662-1670",
         "Letzkus et al. 2011, Nature 480:331-335")),
    "E-PV-SST-VIP": Motif(
        "E-PV-SST-VIP", _canonical, "canonical cortical circuit with three interneuron classes",
        ("Pfeffer et al. 2013, Nat Neurosci 16:1068-1076", "Jiang et al. 2015, Science 350:aac9462",
         "Campagnola et al. 2022, Science 375:eabj5861")),
}


def list_motifs() -> list[str]:
    """Names of the registered motifs."""
    return list(MOTIFS)


def motif(name: str, channels: int = 4) -> CellTypeTable:
    """A fresh :class:`~bionn.circuits.celltypes.CellTypeTable` of motif ``name``.

    Args:
        name: one of :func:`list_motifs`; case and separators (``-``, ``_``, space)
            do not matter (``"e_pv_sst_vip"`` is ``"E-PV-SST-VIP"``).
        channels: E neurons (non-spatial) or E channels per position (spatial);
            each interneuron type gets ``channels // 4`` (at least 1).

    Example:
        >>> motif("e_pv_sst_vip").names
        ('E', 'PV', 'SST', 'VIP')
    """
    def key(s: str) -> str:
        return "".join(c for c in str(s).lower() if c.isalnum())

    found = {key(k): k for k in MOTIFS}.get(key(name))
    if found is None:
        raise ValueError(f"unknown motif {name!r}; motifs are {list(MOTIFS)}")
    name = found
    if isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0:
        raise ValueError(f"channels must be a positive integer; got {channels!r}")
    return MOTIFS[name].build(channels)
