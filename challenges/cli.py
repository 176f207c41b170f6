"""What every command line of ``challenges`` does the same way: the absl entry point (help flags
exiting with status 0), SIGTERM treated as Ctrl-C (so an interrupted run saves its state and
exits with status 130), refusing stray arguments, and the command that resumes an interrupted
run.
"""
from __future__ import annotations

import shlex
import signal
import sys
from typing import Any, Callable, Sequence

from absl import app, flags

INTERRUPTED = 130  # the exit status of a run stopped by Ctrl-C or SIGTERM
_RESUME_FORMS = ("--resume", "--noresume", "-resume", "-noresume")


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _help_flag(base: type) -> Any:
    """absl's help flag ``base`` (``--help``, ``--helpshort``, ``--helpfull``, ``--helpxml``),
    exiting with status 0 once the help is printed (absl's exit with 1, as for an error)."""

    class Help(base):
        exits_with_zero = True

        def parse(self, argument: Any) -> None:
            try:
                super().parse(argument)
            except SystemExit as done:
                raise SystemExit(0 if done.code == 1 else done.code) from None

    return Help()


def define_help_flags() -> None:
    """absl's help flags, answering with exit status 0 (asking for help is not an error)."""
    app.define_help_flags()
    for base in (app.HelpFlag, app.HelpshortFlag, app.HelpfullFlag, app.HelpXMLFlag):
        flag = _help_flag(base)
        if getattr(flags.FLAGS[flag.name], "exits_with_zero", False):
            continue
        for name in filter(None, (flag.name, flag.short_name)):
            delattr(flags.FLAGS, name)
        flags.DEFINE_flag(flag, module_name=app.__name__)


def main(define_flags: Callable[[], None], run: Callable[[flags.FlagValues], int]) -> None:
    """Defines the flags, parses them and exits with ``run(FLAGS)``'s status (``--help`` and
    ``--helpfull`` with 0). The run sees SIGTERM as ``KeyboardInterrupt`` (catch it, save, return
    :data:`INTERRUPTED`)."""
    define_flags()
    define_help_flags()

    def _main(argv: Sequence[str]) -> int:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        return run(flags.FLAGS)

    app.run(_main)


def command(module: str, resume: bool = False) -> str:
    """This invocation as ``python -m <module> ...``, quoted for a POSIX shell, without any
    ``--resume``/``--noresume`` it was given, and ending in ``--resume`` when ``resume``."""
    args = [a for a in sys.argv[1:] if a.split("=")[0] not in _RESUME_FORMS]
    return shlex.join(["python", "-m", module, *args] + (["--resume"] if resume else []))
