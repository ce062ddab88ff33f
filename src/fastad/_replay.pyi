"""Type stubs of fastad._replay (trace once, replay in C; src/fastad/_replay.pyx)."""
from typing import Any, Callable

from fastad._tape import Tape


_local: Any      # per-thread state (the stack of tapes being traced)


def push_trace(tape: Tape) -> None: ...
def pop_trace() -> Any: ...
def is_input(a: Any, diff: bool = False) -> bool: ...
def register_info(report: Callable[..., Any]) -> None: ...
def not_scalar_message(fun: Callable[..., Any], out: Any) -> str: ...


class Mode:
    """A family of derivatives: what a replay computes once the forward sweep has held."""
    name: str
    family: str
    scalar_output: bool
    reverse: bool

    def regroup_tree(self, res: Any, regroup: Any, many: bool, has_aux: bool) -> Any: ...


class Grad(Mode):
    value: bool

    def __init__(self, value: bool = False) -> None: ...


class Jvp(Mode):
    def __init__(self) -> None: ...


class Vjp(Mode):
    def __init__(self) -> None: ...


class Jacobian(Mode):
    sweep: str

    def __init__(self, sweep: str = "auto") -> None: ...


MODES: dict[str, Mode]


class Compiled:
    """A function traced once per argument signature and replayed in C afterwards."""
    fun: Callable[..., Any]
    argnums: tuple[int, ...]
    many: bool
    mode: Mode
    replay: bool
    has_aux: bool
    traces: int
    replays: int
    retraces: int
    reverse_sweeps: int
    tangent_sweeps: int
    random: str
    optimize: bool
    native: str

    def __init__(self, fun: Callable[..., Any], argnums: Any, many: bool, mode: Any,
                 replay: bool = True, has_aux: bool = False, random: str = "fresh",
                 optimize: bool = True, native: str = "auto") -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def cache_info(self) -> Any: ...
    def tapes(self) -> list[Tape]: ...
    def info(self) -> Any: ...
    def cache_clear(self) -> None: ...
    def __reduce__(self) -> tuple[Any, ...]: ...


class Outputs:
    slots: Any
    shape: tuple[int, ...] | None
    simple: bool

    def __init__(self, slots: Any, shape: Any, tree: Any, aux: Any, simple: Any) -> None: ...


class VJPFunction:
    def __call__(self, cotangent: Any) -> Any: ...
