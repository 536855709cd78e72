# What tasks.py offers, as a type checker should see it (make typecheck,
# tests/test_hardware_typecheck.py). `sleep_ms` returns the one _Sleep object,
# which MicroPython's `await` drives through __iter__ (await is `yield from`
# there); the type checker wants `__await__`, which the object does not carry
# so as not to cost the board a method. Not shipped: manifest.py takes *.py.
from typing import Any, Awaitable, Coroutine

def sleep_ms(ms: int) -> Awaitable[None]: ...
def create_task(coro: Coroutine[Any, Any, Any]) -> None: ...
def run(main: Coroutine[Any, Any, Any]) -> Any: ...
