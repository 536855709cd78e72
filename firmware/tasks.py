"""The device's tasks: coroutines taking turns, each waiting only in
`await sleep_ms(ms)`.

Why not asyncio: the device core needs nothing of it but sleeping and
starting tasks (every socket here is non-blocking and polled), and
asyncio's modules, task queue and Task objects kept about 4 KB of a 48 KiB
heap resident. Here a task is its coroutine and a due time in two lists;
a sleep allocates nothing.

    tasks.create_task(coro)     # runs from the next turn on
    tasks.run(main_coro)        # until main_coro returns (its value) or raises

A task other than the main one that raises an Exception is printed and
dropped, as asyncio does; anything else (SystemExit: a board reset) ends
run() at once.
"""
import time

_coros = []     # the tasks' coroutines
_due = []       # ticks_ms when each may run again


class _Sleep:
    # One object for every sleep: `await sleep_ms(ms)` yields ms up to run()
    # once, and is done when resumed. StopIteration made once, too (class
    # attributes: no __init__ function kept in the heap for one instance).
    ms = -1
    done = StopIteration()

    def __iter__(self):
        return self

    def __next__(self):
        ms = self.ms
        if ms < 0:
            self.done.__traceback__ = None
            raise self.done
        self.ms = -1
        return ms


_sleep = _Sleep()


def sleep_ms(ms):
    _sleep.ms = ms if ms > 0 else 0
    return _sleep


def create_task(coro):
    _coros.append(coro)
    _due.append(time.ticks_ms())


def run(main):
    create_task(main)
    coros, due = _coros, _due
    while True:
        # The task due first; among equals, the one started first.
        i = 0
        for j in range(1, len(coros)):
            if time.ticks_diff(due[j], due[i]) < 0:
                i = j
        wait = time.ticks_diff(due[i], time.ticks_ms())
        if wait > 0:
            time.sleep_ms(wait)
        coro = coros[i]
        try:
            ms = coro.send(None)
        except StopIteration as e:
            coros.pop(i)
            due.pop(i)
            if coro is main:
                return e.value
            continue
        except Exception as e:
            coros.pop(i)
            due.pop(i)
            if coro is main:
                raise
            print("task", repr(e))
            continue
        due[i] = time.ticks_add(time.ticks_ms(), ms or 0)
