"""scripts/architecture.py, the drawing of docs/architecture.md: its graph code on small known
graphs, and the two rules the house keeps today (no import cycle, no private name across
modules) on the real package."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "architecture.py"


@pytest.fixture(scope="module")
def arch() -> ModuleType:
    spec = importlib.util.spec_from_file_location("architecture", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"pdm.a": {"pdm.b"}, "pdm.b": set()}, []),
        ({"pdm.a": {"pdm.b"}, "pdm.b": {"pdm.a"}, "pdm.c": {"pdm.a"}}, [["pdm.a", "pdm.b"]]),
        (  # a ring of three and, apart, a pair
            {
                "pdm.a": {"pdm.b"},
                "pdm.b": {"pdm.c"},
                "pdm.c": {"pdm.a"},
                "pdm.d": {"pdm.e"},
                "pdm.e": {"pdm.d"},
            },
            [["pdm.a", "pdm.b", "pdm.c"], ["pdm.d", "pdm.e"]],
        ),
        ({"pdm.x": {"pdm.x.y"}, "pdm.x.y": {"pdm.x"}}, []),  # a package and its own module
    ],
)
def test_cycles_on_known_graphs(
    arch: ModuleType, edges: dict[str, set[str]], expected: list[list[str]]
) -> None:
    assert sorted(arch.cycles(edges)) == expected


def test_arrows_up_a_floor_and_forbidden_ones_are_named(arch: ModuleType) -> None:
    edges = {
        "pdm.dsp.spectrum": {"pdm.core.chunk", "pdm.sources.base"},  # down, then up
        "pdm.dashboard.alarms": {"pdm.history.sqlite", "pdm.supervision.ack"},  # read ok, act not
        "pdm.core.chunk": set(),
        "pdm.sources.base": set(),
        "pdm.history.sqlite": set(),
        "pdm.supervision.ack": set(),
    }
    assert arch.wrong_way(edges) == [
        ("pdm.dashboard.alarms", "pdm.supervision.ack", "forbidden"),
        ("pdm.dsp.spectrum", "pdm.sources.base", "up: dsp → sources"),
    ]


def test_the_package_has_no_cycle_and_no_private_name_across_modules(arch: ModuleType) -> None:
    edges, _, private = arch.read_imports()
    assert arch.cycles(edges) == []
    assert private == []
    for module in edges:  # every module has a room on a floor (else: add it to FLOORS)
        arch.room_of(module)
