"""One registry pattern for every component chosen by keyword in params.yaml.

    SCHEDULERS = Registry("scheduler")

    @SCHEDULERS.register(help="cosine decay with linear warm-up")
    def cosine(...): ...

    @SOURCES.register("easy-vqa", help="...")  # a keyword that is no Python name
    def easy_vqa_shapes(...): ...

The keyword is the builder's own name wherever it can be, so `grep "def cosine"` finds the code
behind `scheduler: cosine`.

A registry may also take a *provider* for names it does not hold itself (the model registry
uses timm's thousand-odd architectures this way), so lookups, listing and "did you mean"
work the same for our own components and for library ones.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import choice_error


@dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable
    help: str


class Registry:
    def __init__(self, kind: str, provider: "Provider | None" = None):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self.provider = provider

    def register(self, name: str | None = None, help: str = ""):
        """Decorator registering a builder under `name`, or under the function's own name when
        `name` is left out (the usual form; name it only for keywords that are not Python names)."""
        if callable(name):
            raise TypeError(f"{self.kind} registry: write @register(), with parentheses")

        def decorator(fn: Callable) -> Callable:
            key = name or fn.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self._entries[key] = Entry(key, fn, help or (fn.__doc__ or "").strip().split("\n")[0])
            return fn

        return decorator

    def own_names(self) -> list[str]:
        return sorted(self._entries)

    def names(self) -> list[str]:
        extra = self.provider.names() if self.provider else []
        return sorted(set(self._entries) | set(extra))

    def __contains__(self, name: str) -> bool:
        return name in self._entries or bool(self.provider and self.provider.has(name))

    def check(self, name: str, key: str | None = None, where: str = "params.yaml") -> str:
        """Return `name` if known, else raise a one-line error naming the key and the choices."""
        if name not in self:
            raise choice_error(key or self.kind, name, self.names(), where=where)
        return name

    def get(self, name: str, key: str | None = None) -> Callable:
        self.check(name, key)
        if name in self._entries:
            return self._entries[name].builder
        return self.provider.builder(name)

    def describe(self) -> list[tuple[str, str]]:
        rows = [(e.name, e.help) for _, e in sorted(self._entries.items())]
        if self.provider:
            rows.append((f"<{len(self.provider.names())} more>", self.provider.help))
        return rows


class Provider:
    """Names supplied by a library (e.g. timm models), looked up lazily."""

    help = ""

    def names(self) -> Iterable[str]:  # pragma: no cover - interface
        raise NotImplementedError

    def has(self, name: str) -> bool:
        return name in set(self.names())

    def builder(self, name: str) -> Callable:  # pragma: no cover - interface
        raise NotImplementedError
