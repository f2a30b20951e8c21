"""A name → class registry with PEFT's `register_peft_method` rules: one name per class, duplicates refused.

Losses, strategies and task weightings each keep one [`Registry`]; their classes carry the metadata the model
card and the report read (`name`, `title`, `description`, `citation`), so nothing else lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from .utils import suggest_names

T = TypeVar("T", bound=type)


class Registry(Mapping[str, T], Generic[T]):
    """Registered classes by name, read-only except through [`Registry.register`].

    Args:
        kind: What is registered ("strategy", "task weighting", ...), used in error messages.
        base: Every registered class must subclass it.
        setting: The user-facing setting that takes these names (e.g. `strategy`), named in errors.
    """

    def __init__(self, kind: str, base: type, setting: str) -> None:
        self.kind = kind
        self.base = base
        self.setting = setting
        self._entries: dict[str, T] = {}

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"

    def get_class(self, name: str) -> T:
        """The class registered as `name`.

        Raises:
            ValueError: Naming the setting, the unknown name, close matches and every registered name.
        """
        if name not in self._entries:
            raise ValueError(
                f"Unknown {self.setting} {name!r}{suggest_names(name, self._entries)}; registered "
                f"{self.kind} names: {sorted(self._entries)}"
            )
        return self._entries[name]

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator adding a subclass of `base` under `name` (sets `cls.name`).

        Raises:
            ValueError: If `name` is empty or taken by another class (re-registering the same class, as a
                module reload does, is allowed).
            TypeError: If the decorated object is not a subclass of `base`.
        """
        if not isinstance(name, str) or not name or "+" in name:
            raise ValueError(f"A {self.kind} name must be a non-empty string without '+', got {name!r}")

        def decorator(cls: T) -> T:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"Only {self.base.__name__} subclasses can be registered as a {self.kind}, got {cls!r}")
            existing = self._entries.get(name)
            if existing is not None and _qualified_name(existing) != _qualified_name(cls):
                raise ValueError(
                    f"A {self.kind} named {name!r} is already registered ({_qualified_name(existing)}); "
                    "choose another name"
                )
            cls.name = name
            self._entries[name] = cls
            return cls

        return decorator

    def unregister(self, name: str) -> None:
        """Remove `name` (for tests and notebooks that re-define a class)."""
        self._entries.pop(name, None)


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
